//! The profiling settings a recorded program ran with: gperftools' heap
//! profiler variables (`HEAPPROFILE`, `HEAP_PROFILE_*_INTERVAL`,
//! `HEAPPROFILESIGNAL`, ...). A FileInfo record carries them after its
//! fields, so that a replay can write the profiles gperftools would have
//! written without being told the rules again.

use crate::info::{from_bytes, to_bytes};
use crate::FileInfo;
use serde::{Deserialize, Serialize};

/// The variables a recorder keeps, when they are set.
pub const NAMES: [&str; 8] = [
    "HEAPPROFILE",
    "HEAP_PROFILE_ALLOCATION_INTERVAL",
    "HEAP_PROFILE_DEALLOCATION_INTERVAL",
    "HEAP_PROFILE_INUSE_INTERVAL",
    "HEAP_PROFILE_TIME_INTERVAL",
    "HEAPPROFILESIGNAL",
    "HEAP_PROFILE_MMAP",
    "HEAPPROFILE_USE_PID",
];

/// Longest value kept, in bytes; longer values are cut.
pub const MAX_VALUE_LEN: usize = 4096;

/// Variables and their values, in the order of [`NAMES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// (name, value) pairs.
    pub vars: Vec<(String, String)>,
}

impl Settings {
    /// The settings among `lookup`'s variables (the environment, say).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let vars = NAMES
            .iter()
            .filter_map(|&name| {
                let mut value = lookup(name)?;
                if value.len() > MAX_VALUE_LEN {
                    let mut cut = MAX_VALUE_LEN;
                    while !value.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    value.truncate(cut);
                }
                Some((name.to_string(), value))
            })
            .collect();
        Self { vars }
    }

    /// The value of `name`, if it was set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if no variable was set.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The prefix gperftools gives the profiles of process `pid` (`child`:
    /// one started by a profiled process): `HEAPPROFILE`, with `_PID` after
    /// it for a child or with `HEAPPROFILE_USE_PID` true (its first letter
    /// one of `tTyY1`, or empty). `None` without `HEAPPROFILE`.
    pub fn profile_prefix(&self, pid: u32, child: bool) -> Option<String> {
        let prefix = self.get("HEAPPROFILE").filter(|p| !p.is_empty())?;
        let use_pid = self.get("HEAPPROFILE_USE_PID").is_some_and(flag);
        Some(match use_pid || child {
            true => format!("{prefix}_{pid}"),
            false => prefix.to_string(),
        })
    }

    /// Whether `HEAP_PROFILE_MMAP` asks for mapping calls to be recorded:
    /// true as gperftools reads a flag (its first letter one of `tTyY1`,
    /// or empty).
    pub fn mmap_profile(&self) -> bool {
        self.get("HEAP_PROFILE_MMAP").is_some_and(flag)
    }

    /// The signal `HEAPPROFILESIGNAL` names, if `HEAPPROFILE` is set too
    /// (gperftools ignores it otherwise) and it is one (1 to 64).
    pub fn profile_signal(&self) -> Option<i32> {
        self.get("HEAPPROFILE").filter(|p| !p.is_empty())?;
        let n = env_to_int(self.get("HEAPPROFILESIGNAL")?);
        (1..=64).contains(&n).then_some(n as i32)
    }
}

/// A variable's value as the recorder reads it from the environment's
/// bytes, and whether libtcmalloc marked it. libtcmalloc, once it has read
/// `HEAPPROFILE`, sets the high bit of its first byte, for the processes
/// it starts to tell themselves apart: a value that is UTF-8 only with
/// that bit cleared is taken so. Other bytes that are not UTF-8 are
/// replaced.
pub fn env_value(bytes: &[u8]) -> (String, bool) {
    if let (Err(_), Some(&first)) = (std::str::from_utf8(bytes), bytes.first()) {
        let mut cleared = bytes.to_vec();
        cleared[0] = first & 0x7f;
        if first >= 0x80 && cleared[0] != 0 {
            if let Ok(text) = String::from_utf8(cleared) {
                return (text, true);
            }
        }
    }
    (String::from_utf8_lossy(bytes).into_owned(), false)
}

/// A boolean as gperftools reads one from the environment: true if its
/// first letter is one of `tTyY1`, or if it is empty.
fn flag(value: &str) -> bool {
    value.is_empty() || value.starts_with(['t', 'T', 'y', 'Y', '1'])
}

/// A number as gperftools reads one from the environment (`strtoll` in
/// base 10): leading blanks, a sign, then digits up to the first other
/// character; 0 if there are none. Saturates past the range.
pub fn env_to_int(text: &str) -> i64 {
    let t = text.trim_start();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    for d in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(d - b'0');
        value = value.saturating_mul(10).saturating_add(d);
    }
    if negative {
        -value
    } else {
        value
    }
}

/// Present in the FileInfo record of a trace recorded by attaching to a
/// process that was already running (`heapreplay attach`): the trace
/// covers what the process did from then on (FileInfo's `start_unix_ns`),
/// and blocks allocated before are unknown to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// When the process itself started, nanoseconds since the Unix epoch
    /// (0 if unknown).
    pub process_start_unix_ns: u64,
}

/// A FileInfo record's payload: `info`, then `settings` unless empty, then
/// `attached` (after `settings`, even empty ones) if the recording began
/// with an attach.
pub fn encode_file_info(
    info: &FileInfo,
    settings: &Settings,
    attached: Option<&Attached>,
) -> std::io::Result<Vec<u8>> {
    let mut out = to_bytes(info)?;
    if !settings.is_empty() || attached.is_some() {
        out.extend(to_bytes(settings)?);
    }
    if let Some(attached) = attached {
        out.extend(to_bytes(attached)?);
    }
    Ok(out)
}

/// The attach a FileInfo record's payload names after `info` and
/// `settings` (both decoded from it), if any.
pub fn decode_attached(payload: &[u8], info: &FileInfo, settings: &Settings) -> Option<Attached> {
    let len = bincode::serialized_size(info).ok()? + bincode::serialized_size(settings).ok()?;
    let rest = payload.get(usize::try_from(len).ok()?..)?;
    from_bytes::<Attached>(rest)
}

/// The settings a FileInfo record's payload carries after `info` (decoded
/// from it); none if there are no bytes after it or they do not decode.
pub fn decode_settings(payload: &[u8], info: &FileInfo) -> Settings {
    let Ok(len) = bincode::serialized_size(info) else {
        return Settings::default();
    };
    let rest = usize::try_from(len)
        .ok()
        .and_then(|len| payload.get(len..))
        .unwrap_or_default();
    if rest.is_empty() {
        return Settings::default();
    }
    from_bytes::<Settings>(rest)
        .filter(|s| s.vars.len() <= NAMES.len())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtcmalloc_s_mark_on_heapprofile_is_cleared() {
        assert_eq!(env_value(b"\xaftmp/app"), ("/tmp/app".into(), true));
        assert_eq!(env_value(b"/tmp/app"), ("/tmp/app".into(), false));
        assert_eq!(env_value(b""), ("".into(), false));
        // UTF-8 as it is: a path that starts with a letter beyond ASCII.
        let ete = "\u{e9}t\u{e9}/app";
        assert_eq!(env_value(ete.as_bytes()), (ete.into(), false));
    }

    #[test]
    fn numbers_read_as_strtoll_reads_them() {
        assert_eq!(env_to_int("10000000"), 10_000_000);
        assert_eq!(env_to_int("  12abc"), 12);
        assert_eq!(env_to_int("+12"), 12);
        assert_eq!(env_to_int("10MB"), 10);
        assert_eq!(env_to_int("-5"), -5);
        assert_eq!(env_to_int("x"), 0);
        assert_eq!(env_to_int(""), 0);
        assert_eq!(env_to_int("99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn profiles_are_named_as_gperftools_names_them() {
        let with = |vars: &[(&str, &str)]| Settings {
            vars: vars
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let plain = with(&[("HEAPPROFILE", "/tmp/app"), ("HEAPPROFILESIGNAL", "+12")]);
        assert_eq!(plain.profile_prefix(7, false).as_deref(), Some("/tmp/app"));
        assert_eq!(plain.profile_prefix(7, true).as_deref(), Some("/tmp/app_7"));
        assert_eq!(plain.profile_signal(), Some(12));
        let use_pid = with(&[("HEAPPROFILE", "/tmp/app"), ("HEAPPROFILE_USE_PID", "yes")]);
        assert_eq!(
            use_pid.profile_prefix(7, false).as_deref(),
            Some("/tmp/app_7")
        );
        let no_pid = with(&[("HEAPPROFILE", "/tmp/app"), ("HEAPPROFILE_USE_PID", "0")]);
        assert_eq!(no_pid.profile_prefix(7, false).as_deref(), Some("/tmp/app"));
        // Without HEAPPROFILE, gperftools ignores the signal.
        let signal_only = with(&[("HEAPPROFILESIGNAL", "12")]);
        assert_eq!(signal_only.profile_prefix(7, false), None);
        assert_eq!(signal_only.profile_signal(), None);
        assert_eq!(
            with(&[("HEAPPROFILE", "a"), ("HEAPPROFILESIGNAL", "0")]).profile_signal(),
            None
        );
    }

    #[test]
    fn settings_ride_after_the_file_info_and_older_readers_ignore_them() {
        let info = FileInfo {
            pid: 7,
            cmdline: "app".into(),
            ..FileInfo::default()
        };
        let settings = Settings::from_lookup(|name| match name {
            "HEAPPROFILE" => Some("/tmp/app".into()),
            "HEAPPROFILESIGNAL" => Some("12".into()),
            _ => None,
        });
        let payload = encode_file_info(&info, &settings, None).unwrap();
        // A reader that knows only FileInfo reads it as before.
        assert_eq!(from_bytes::<FileInfo>(&payload), Some(info.clone()));
        assert_eq!(decode_settings(&payload, &info), settings);
        assert_eq!(settings.get("HEAPPROFILESIGNAL"), Some("12"));
        // Without settings, the payload is FileInfo's alone.
        let bare = encode_file_info(&info, &Settings::default(), None).unwrap();
        assert_eq!(bare, to_bytes(&info).unwrap());
        assert!(decode_settings(&bare, &info).is_empty());
        // Bytes after it that are not settings are none.
        let mut junk = bare.clone();
        junk.extend([0xff; 9]);
        assert!(decode_settings(&junk, &info).is_empty());
        assert_eq!(decode_attached(&payload, &info, &settings), None);
        assert_eq!(decode_attached(&bare, &info, &Settings::default()), None);
    }

    #[test]
    fn an_attach_rides_after_the_settings_even_empty_ones() {
        let info = FileInfo {
            pid: 9,
            ..FileInfo::default()
        };
        let attached = Attached {
            process_start_unix_ns: 1_700_000_000_000_000_000,
        };
        for settings in [
            Settings::default(),
            Settings::from_lookup(|n| (n == "HEAPPROFILE").then(|| "/tmp/p".into())),
        ] {
            let payload = encode_file_info(&info, &settings, Some(&attached)).unwrap();
            assert_eq!(from_bytes::<FileInfo>(&payload), Some(info.clone()));
            let decoded = decode_settings(&payload, &info);
            assert_eq!(decoded, settings);
            assert_eq!(decode_attached(&payload, &info, &decoded), Some(attached));
        }
    }
}
