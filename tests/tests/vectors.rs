//! The checked-in trace vectors (`tests/vectors/*.zst`, one per hostile case
//! of FORMAT.md, plus every fuzz finding under `findings/` and traces of
//! older format versions, still read, under `older-versions/`) give exactly the
//! `info` and `top` output, stderr and exit status written beside each in
//! `NAME.expected`. So the spec, the reader and its messages cannot drift
//! apart unnoticed. `HEAPREPLAY_UPDATE_VECTORS=1` rewrites the expected
//! files (then read the diff).

use heapreplay_e2e::{heapreplay, hostile, root};
use std::path::Path;
use std::process::Command;

/// What `heapreplay ARGS NAME.zst`, run in the vector's folder, prints.
fn transcript(dir: &Path, name: &str) -> String {
    let mut out = String::new();
    for command in ["info", "top"] {
        let o = Command::new(heapreplay())
            .args([command, name])
            .current_dir(dir)
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .unwrap();
        out.push_str(&format!(
            "$ heapreplay {command} {name}\n{}{}exit {}\n",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            o.status
                .code()
                .map_or_else(|| "by a signal".to_string(), |c| c.to_string())
        ));
    }
    out
}

fn vector_dirs() -> Vec<std::path::PathBuf> {
    let base = root().join("tests/vectors");
    vec![
        base.clone(),
        base.join("findings"),
        base.join("older-versions"),
    ]
}

#[test]
fn every_vector_gives_its_expected_output() {
    let update = std::env::var_os("HEAPREPLAY_UPDATE_VECTORS").is_some();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for dir in vector_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".zst"))
            .collect();
        names.sort();
        for name in names {
            let got = transcript(&dir, &name);
            let expected_path = dir.join(name.replace(".zst", ".expected"));
            if update {
                std::fs::write(&expected_path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != want {
                wrong.push(format!("{name}:\n--- expected\n{want}\n--- got\n{got}"));
            }
            assert!(!got.contains("by a signal"), "{name} crashed:\n{got}");
            checked += 1;
        }
    }
    assert!(
        checked >= hostile::MUTATIONS.len(),
        "only {checked} vectors"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The vectors are what the generator makes for each mutation (seed 1):
/// a change to either shows here.
#[test]
fn vectors_match_the_generator() {
    for (name, _) in hostile::MUTATIONS {
        let case = hostile::named_case(name, 1).unwrap();
        let path = root().join(format!("tests/vectors/{name}.zst"));
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (heapreplay-fuzz --write-vectors tests/vectors)",
                path.display()
            )
        });
        assert!(
            on_disk == case.bytes,
            "{name}: the vector differs from the generator's"
        );
    }
}

/// Each vector's exit status agrees with what its case demands: 0 for the
/// valid ones, 3 (damage) or 1 (refused) for the others.
#[test]
fn exit_status_follows_the_case() {
    let dir = root().join("tests/vectors");
    for (name, _) in hostile::MUTATIONS {
        let case = hostile::named_case(name, 1).unwrap();
        let o = Command::new(heapreplay())
            .args(["info", &format!("{name}.zst")])
            .current_dir(&dir)
            .output()
            .unwrap();
        let code = o.status.code();
        match case.expect {
            hostile::Expect::Exact(t) => {
                assert_eq!(
                    code,
                    Some(0),
                    "{name}: {}",
                    String::from_utf8_lossy(&o.stdout)
                );
                let stdout = String::from_utf8_lossy(&o.stdout);
                let line = stdout.lines().find(|l| l.starts_with("events:")).unwrap();
                assert!(
                    line.contains(&format!("{} allocations", t.allocs)),
                    "{name}: {line} (model: {t:?})"
                );
            }
            hostile::Expect::Damage => assert!(
                matches!(code, Some(1 | 3)),
                "{name}: exit {code:?}\n{}",
                String::from_utf8_lossy(&o.stdout)
            ),
            hostile::Expect::Survive => assert!(code.is_some(), "{name} crashed"),
        }
    }
}
