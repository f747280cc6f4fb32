//! Parsers for the textual forms of configuration values.

use std::time::Duration;

/// `500ms`, `300s`, `30m`, `12h`, `7d`. A bare number is refused: the unit is part of the meaning.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (write it like 300s, 30m, 12h or 7d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// A byte count: `65536`, `64KiB`, `1MiB` (also `KB`/`MB` as powers of 1000).
pub fn byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 65536, 64KiB or 1MiB"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "KB" => 1000,
        "MB" => 1_000_000,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}` (use KiB or MiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|&size| size > 0)
        .ok_or_else(|| format!("`{text}` is out of range"))
}

pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "30",
            "m",
            "-5s",
            "5 weeks",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(byte_size("65536"), Ok(65536));
        assert_eq!(byte_size("64KiB"), Ok(65536));
        assert_eq!(byte_size("1MiB"), Ok(1 << 20));
        for bad in ["", "0", "lots", "12XB", "-1"] {
            assert!(byte_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(list(" GB, US ,,FR"), vec!["GB", "US", "FR"]);
        assert!(list("").is_empty());
    }
}
