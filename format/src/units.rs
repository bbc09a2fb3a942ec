//! Parsing user-given sizes such as `10MB`, `512KiB` or `1GB`: snapshot
//! rules and the disk cap (`HEAPREPLAY_MAX_SIZE`, which the recorder reads
//! too).

/// Splits `10MB`, `1.5 s` or `500` into its number and its unit (trimmed).
pub fn split_number(text: &str) -> (&str, &str) {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    (num, unit.trim())
}

/// Parses a byte size. Units are binary, as gperftools counts:
/// `K`/`KB`/`KiB` = 2^10, `M`/`MB`/`MiB` = 2^20, `G`/`GB`/`GiB` = 2^30,
/// `T`/`TB`/`TiB` = 2^40; a bare number or `B` is bytes. Fractions are
/// allowed with a unit (`1.5GB`). Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is negative: a size must be greater than zero"
        ));
    }
    let (num, unit) = split_number(text);
    if num.is_empty() {
        return Err(format!(
            "'{text}' is not a size: expected a number such as 10MB"
        ));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}': use B, KB, MB, GB or TB"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a size: '{num}' is not a number"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    let bytes = bytes.round() as u64;
    if bytes == 0 {
        return Err(format!("'{text}' must be greater than zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("7 b"), Ok(7));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(parse_size("0").unwrap_err().contains("greater than zero"));
        assert!(parse_size("10XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MB").unwrap_err().contains("not a size"));
        assert!(parse_size("1.2.3MB").unwrap_err().contains("not a number"));
        assert!(parse_size("").is_err());
    }
}
