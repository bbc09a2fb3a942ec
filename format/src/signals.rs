//! Signal names and numbers (Linux, glibc), for marker signals.

const NAMES: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// First real-time signal available to applications under glibc.
pub const SIGRTMIN: i32 = 34;
/// Last real-time signal.
pub const SIGRTMAX: i32 = 64;

/// Parses a signal: `usr2`, `SIGUSR2`, `12`, `rtmin+3`, `SIGRTMAX-1`
/// (case-insensitive). Returns `None` for unknown names and numbers outside
/// 1..=64.
pub fn parse_signal(text: &str) -> Option<i32> {
    let t = text.trim().to_ascii_uppercase();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&n).then_some(n);
    }
    let t = t.strip_prefix("SIG").unwrap_or(&t);
    if let Some(rest) = t.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        let n = SIGRTMIN + off;
        return (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n);
    }
    if let Some(rest) = t.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')?.parse().ok()?
        };
        let n = SIGRTMAX - off;
        return (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n);
    }
    NAMES.iter().find(|(name, _)| *name == t).map(|&(_, n)| n)
}

/// The conventional name of a signal: `SIGUSR2`, `SIGRTMIN+3`, or the number.
pub fn signal_name(n: i32) -> String {
    if let Some((name, _)) = NAMES.iter().find(|&&(_, m)| m == n) {
        return format!("SIG{name}");
    }
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        return if n == SIGRTMIN {
            "SIGRTMIN".into()
        } else {
            format!("SIGRTMIN+{}", n - SIGRTMIN)
        };
    }
    format!("signal {n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("usr2"), Some(12));
        assert_eq!(parse_signal("SIGUSR2"), Some(12));
        assert_eq!(parse_signal("12"), Some(12));
        assert_eq!(parse_signal("rtmin+3"), Some(37));
        assert_eq!(parse_signal("SIGRTMAX-1"), Some(63));
        assert_eq!(parse_signal("rtmin"), Some(34));
        assert_eq!(parse_signal("usr3"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("65"), None);
        assert_eq!(parse_signal("rtmin+40"), None);
        assert_eq!(signal_name(12), "SIGUSR2");
        assert_eq!(signal_name(37), "SIGRTMIN+3");
    }
}
