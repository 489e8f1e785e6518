//! Exact parsing of Kubernetes quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) into the
//! integers the scheduler compares: millicores for CPU, whole units (bytes, pods, devices) for
//! everything else. Rounding is upwards, as `Quantity.MilliValue()` / `Value()` round.

use thiserror::Error;

/// Why a quantity string is not a Kubernetes quantity.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    /// Nothing, or only a sign.
    #[error("quantity {0:?} has no number")]
    NoNumber(String),
    /// Characters after the number that are no known suffix.
    #[error("quantity {0:?} has an unknown suffix")]
    Suffix(String),
}

/// Parses `s` and returns `ceil(value × 10^scale)`, saturated to the `i64` range. `scale` 3
/// gives millis, 0 whole units.
pub fn parse_scaled(s: &str, scale: i32) -> Result<i64, QuantityError> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // Digits with an optional decimal point.
    let mut mantissa: u128 = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_digit = false;
    let mut seen_point = false;
    let mut dropped_nonzero = false;
    let mut end = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '0'..='9' => {
                seen_digit = true;
                let d = u128::from(c as u8 - b'0');
                // Keep 30 significant digits; anything beyond only matters for rounding up.
                if mantissa < 10u128.pow(30) {
                    mantissa = mantissa * 10 + d;
                    if seen_point {
                        frac_digits += 1;
                    }
                } else if !seen_point {
                    // An integer part this long saturates anyway.
                    mantissa = mantissa.saturating_mul(10);
                } else if d != 0 {
                    dropped_nonzero = true;
                }
                end = i + 1;
            }
            '.' if !seen_point => {
                seen_point = true;
                end = i + 1;
            }
            _ => break,
        }
    }
    if !seen_digit {
        return Err(QuantityError::NoNumber(s.into()));
    }
    let suffix = &rest[end..];
    let (binary_shift, mut exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .and_then(|e| e.parse::<i32>().ok())
                .filter(|e| (-1000..=1000).contains(e))
                .ok_or_else(|| QuantityError::Suffix(s.into()))?;
            (0, exp)
        }
    };
    exp10 += scale - frac_digits;
    let mut value = mantissa;
    if binary_shift > 0 {
        value = value.checked_shl(binary_shift).unwrap_or(u128::MAX);
        if value >> binary_shift != mantissa {
            value = u128::MAX;
        }
    }
    let magnitude: u128 = if exp10 >= 0 {
        let mut v = value;
        for _ in 0..exp10 {
            v = v.saturating_mul(10);
            if v == u128::MAX {
                break;
            }
        }
        v
    } else {
        let mut v = value;
        let mut remainder = dropped_nonzero;
        for _ in 0..(-exp10) {
            if v == 0 {
                break;
            }
            remainder |= !v.is_multiple_of(10);
            v /= 10;
        }
        v + u128::from(remainder)
    };
    let clamped = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Ok(if negative { -clamped } else { clamped })
}

/// CPU as millicores (`250m` → 250, `1.5` → 1500).
pub fn milli(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 3)
}

/// Whole units: bytes for memory and storage, counts for pods and devices.
pub fn units(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millis() {
        assert_eq!(milli("100m"), Ok(100));
        assert_eq!(milli("1"), Ok(1000));
        assert_eq!(milli("1.5"), Ok(1500));
        assert_eq!(milli("0.1"), Ok(100));
        assert_eq!(milli("1e3"), Ok(1_000_000));
        assert_eq!(milli("250000u"), Ok(250));
        assert_eq!(milli("1n"), Ok(1), "rounds up");
        assert_eq!(milli("0"), Ok(0));
        assert_eq!(milli("+2"), Ok(2000));
        assert_eq!(milli("-1"), Ok(-1000));
    }

    #[test]
    fn bytes() {
        assert_eq!(units("128Mi"), Ok(128 << 20));
        assert_eq!(units("1G"), Ok(1_000_000_000));
        assert_eq!(units("1.5Gi"), Ok(3 << 29));
        assert_eq!(units("1k"), Ok(1000));
        assert_eq!(units("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(units("100Ei"), Ok(i64::MAX), "saturates");
        assert_eq!(units("0.5"), Ok(1), "rounds up");
        assert_eq!(units("110"), Ok(110));
        assert_eq!(units("12E-1"), Ok(2));
    }

    #[test]
    fn malformed() {
        assert!(units("").is_err());
        assert!(units("Mi").is_err());
        assert!(units("1Q").is_err());
        assert!(units("1.2.3").is_err());
        assert!(units("1e").is_err());
        assert!(units("-").is_err());
        assert!(units("1e99999").is_err());
    }
}
