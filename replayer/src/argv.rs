//! The command line as people type it, put in the shape clap parses:
//! options placed before a subcommand move after it, and a first word that
//! is neither a subcommand nor a file but looks like a subcommand is
//! refused with the subcommand it was probably meant to be.

use clap::Command;
use std::ffi::OsString;
use std::path::Path;

/// `args` (program name first) rearranged for `cli`: `heapreplay -q top
/// t.zst` becomes `heapreplay top -q t.zst`. An error names a mistyped
/// subcommand (`heapreplay leak t.zst`: did you mean `leaks`?).
pub fn arrange(cli: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(first) = first_word(cli, &args) else {
        return Ok(args);
    };
    let word = args[first].to_string_lossy();
    if subcommand_named(cli, &word) {
        if first == 1 {
            return Ok(args);
        }
        let subcommand = cli
            .find_subcommand(&*word)
            .ok_or_else(|| format!("no subcommand '{word}'"))?;
        if let Some(stranger) = foreign_option(subcommand, &args[1..first]) {
            return Err(format!(
                "'{stranger}' is not an option of '{word}' (heapreplay {word} --help lists them)"
            ));
        }
        let mut arranged = Vec::with_capacity(args.len());
        arranged.push(args[0].clone());
        arranged.push(args[first].clone());
        arranged.extend(args[1..first].iter().cloned());
        arranged.extend(args[first + 1..].iter().cloned());
        return Ok(arranged);
    }
    if Path::new(&*word).exists() {
        return Ok(args);
    }
    match likely_subcommand(cli, &word) {
        Some(meant) => Err(format!(
            "no subcommand '{word}' and no file of that name; did you mean '{meant}'? (heapreplay --help lists the subcommands)"
        )),
        None => Ok(args),
    }
}

/// The index of the first word that is not an option or an option's value,
/// if any comes before `--`.
fn first_word(cli: &Command, args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--" {
            return None;
        }
        if let Some(long) = arg.strip_prefix("--") {
            if !long.contains('=') && takes_value(cli, |a| a.get_long() == Some(long)) {
                i += 1;
            }
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // A cluster such as `-qn5`: the first letter that takes a value
            // takes the rest, or the next word when nothing is left.
            for (at, letter) in shorts.char_indices() {
                if takes_value(cli, |a| a.get_short() == Some(letter)) {
                    if at + letter.len_utf8() == shorts.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The first option among `before` (the words before the subcommand) that
/// `subcommand` does not take, if any.
fn foreign_option(subcommand: &Command, before: &[OsString]) -> Option<String> {
    let has = |matches: &dyn Fn(&clap::Arg) -> bool| {
        subcommand.get_arguments().any(matches) || subcommand.get_name() == "help"
    };
    let mut skip_value = false;
    for arg in before {
        let arg = arg.to_string_lossy();
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if !has(&|a| {
                a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
            }) {
                return Some(format!("--{name}"));
            }
            skip_value =
                !long.contains('=') && takes_value(subcommand, |a| a.get_long() == Some(name));
        } else if let Some(shorts) = arg.strip_prefix('-') {
            for (at, letter) in shorts.char_indices() {
                if !has(&|a| a.get_short() == Some(letter)) {
                    return Some(format!("-{letter}"));
                }
                if takes_value(subcommand, |a| a.get_short() == Some(letter)) {
                    skip_value = at + letter.len_utf8() == shorts.len();
                    break;
                }
            }
        }
    }
    None
}

/// Whether the option `matches` picks out takes a value, at the top level
/// or in any subcommand (an option before a subcommand may be the
/// subcommand's own).
fn takes_value(cli: &Command, matches: impl Fn(&clap::Arg) -> bool) -> bool {
    std::iter::once(cli)
        .chain(cli.get_subcommands())
        .flat_map(|command| command.get_arguments())
        .any(|a| matches(a) && a.get_action().takes_values())
}

fn subcommand_named(cli: &Command, word: &str) -> bool {
    cli.get_subcommands()
        .any(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
}

/// The subcommand `word` is most like, if it is like one at all (the
/// measure and threshold clap uses for its own suggestions).
fn likely_subcommand<'c>(cli: &'c Command, word: &str) -> Option<&'c str> {
    cli.get_subcommands()
        .map(|s| (strsim::jaro(word, s.get_name()), s.get_name()))
        .filter(|(likeness, _)| *likeness > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn arranged(line: &str) -> Result<String, String> {
        let args = line.split(' ').map(OsString::from).collect();
        let mut command = crate::cli::Cli::command();
        command.build();
        arrange(&command, args).map(|a| {
            a.iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn options_before_a_subcommand_move_after_it() {
        assert_eq!(
            arranged("heapreplay -q top t.zst").unwrap(),
            "heapreplay top -q t.zst"
        );
        assert_eq!(
            arranged("heapreplay --threads 1 -n 3 top t.zst").unwrap(),
            "heapreplay top --threads 1 -n 3 t.zst"
        );
        // A replay option is not top's: said as such, not as a value.
        let error = arranged("heapreplay --interval 1MB top t.zst").unwrap_err();
        assert!(
            error.contains("'--interval' is not an option of 'top'"),
            "{error}"
        );
        // A value that happens to be a subcommand's name stays a value.
        assert_eq!(
            arranged("heapreplay -o top t.zst").unwrap(),
            "heapreplay -o top t.zst"
        );
        assert_eq!(
            arranged("heapreplay record -- top").unwrap(),
            "heapreplay record -- top"
        );
    }

    #[test]
    fn a_mistyped_subcommand_is_named() {
        let error = arranged("heapreplay leak /nonexistent/t.zst").unwrap_err();
        assert!(error.contains("did you mean 'leaks'?"), "{error}");
        // A word like no subcommand is left to the replay, which says the
        // file is missing.
        assert!(arranged("heapreplay /nonexistent/trace.zst").is_ok());
    }
}
