//! Just enough Kubernetes quantity parsing to compare storage sizes.

/// Bytes in a storage quantity such as `100Gi`, `1.5T` or `500000`; `None` when malformed.
pub fn parse_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    if num.is_empty() || num.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() {
        return None;
    }
    let int: u128 = int.parse().ok()?;
    let mut total = int.checked_mul(mult)?;
    if !frac.is_empty() {
        let digits = frac.len().min(18) as u32;
        let frac_val: u128 = frac[..digits as usize].parse().ok()?;
        total = total.checked_add(frac_val.checked_mul(mult)? / 10u128.pow(digits))?;
    }
    Some(total)
}

/// Parses a duration like `6h`, `30m`, `1h30m`, `45s` into seconds.
pub fn parse_duration_secs(d: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num = String::new();
    if d.is_empty() {
        return None;
    }
    for c in d.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("100G"), Some(100_000_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Some(1536));
        assert_eq!(parse_bytes("42"), Some(42));
        assert_eq!(parse_bytes("1Xi"), None);
        assert_eq!(parse_bytes("Gi"), None);
        assert_eq!(parse_bytes("1..2Gi"), None);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_secs("6h"), Some(21600));
        assert_eq!(parse_duration_secs("1h30m"), Some(5400));
        assert_eq!(parse_duration_secs("10"), None);
        assert_eq!(parse_duration_secs("5d"), None);
    }
}
