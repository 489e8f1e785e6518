//! Resource quantities spelled the way upstream's `resource.Quantity.String()` spells them
//! ("1024Mi" prints "1Gi", "1.5" prints "1500m"), since printers show parsed quantities, not
//! the text a client sent.
//!
//! The text is split and its suffix read as validation's `Quantity` does. The spelling is done
//! here because printers follow upstream more closely than stored objects do: for one, text
//! that upstream's parser finds already canonical ("1E3") is printed as sent.

use serde_json::Value;

use super::super::validation::quantity::{interpret, split, Format};

/// A quantity field as upstream prints it: unset is zero ("0"), and text that does not parse
/// is shown as is.
pub(super) fn quantity(v: &Value) -> String {
    match v {
        Value::String(text) => canonical(text).unwrap_or_else(|| text.clone()),
        Value::Number(n) => {
            let text = n.to_string();
            canonical(&text).unwrap_or(text)
        }
        _ => "0".into(),
    }
}

/// The canonical spelling of `text`, or `None` if it is not a quantity (or too large to redo
/// exactly here).
fn canonical(text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    if text == "0" {
        return Some(text.into());
    }
    let (negative, num, denom, suffix) = split(text).ok()?;
    let (base, exponent, format) = interpret(suffix)?;
    if already_canonical(num, denom, exponent, format) {
        return Some(text.into());
    }

    // Exact value: mantissa * 10^exp.
    let digits = format!("{num}{denom}");
    if digits.len() > 36 {
        return None;
    }
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut exp = -i32::try_from(denom.len()).ok()?;
    if base == 10 {
        exp = exp.checked_add(exponent)?;
    } else {
        mantissa = mantissa.checked_mul(1i128.checked_shl(u32::try_from(exponent).ok()?)?)?;
    }
    // Non-zero amounts below a nano round up to one nano.
    if exp < -9 && mantissa != 0 {
        let shift = u32::try_from(-9 - exp).ok()?;
        mantissa = match 10i128.checked_pow(shift) {
            Some(d) => (mantissa + d - 1) / d,
            None => 1,
        };
        exp = -9;
    }
    let mut format = format;
    if format == Format::BinarySi && compare(mantissa, exp, i64::MAX.into()).is_gt() {
        (mantissa, exp) = (i64::MAX.into(), 0);
    }
    if format == Format::BinarySi && mantissa != 0 && compare(mantissa, exp, 1).is_lt() {
        format = Format::DecimalSi;
    }
    if mantissa == 0 {
        return Some("0".into());
    }
    let sign = if negative { "-" } else { "" };

    if format == Format::BinarySi {
        // Upstream switches to decimal for -1024 < q < 1024; the mantissa here is |q|.
        let below_1024 = compare(mantissa, exp, 1024).is_lt();
        match integer(mantissa, exp) {
            Some(mut whole) if !below_1024 => {
                let mut power = 0;
                while whole >= 1024 && whole % 1024 == 0 {
                    whole /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].get(power)?;
                return Some(format!("{sign}{whole}{suffix}"));
            }
            _ => format = Format::DecimalSi,
        }
    }

    while mantissa % 10 == 0 {
        mantissa /= 10;
        exp = exp.checked_add(1)?;
    }
    while exp % 3 != 0 {
        mantissa = mantissa.checked_mul(10)?;
        exp -= 1;
    }
    let suffix = match (format, exp) {
        (Format::DecimalExponent, 0) => String::new(),
        (Format::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        // Upstream has no suffix for other powers and prints the bare mantissa.
        _ => String::new(),
    };
    Some(format!("{sign}{mantissa}{suffix}"))
}

/// Upstream keeps the text as sent when its fast path finds it already canonical; this is
/// that test.
fn already_canonical(num: &str, denom: &str, exponent: i32, format: Format) -> bool {
    let exp = i64::from(exponent);
    let digits = (num.len() + denom.len()) as i64;
    match format {
        Format::BinarySi => {
            let precision = 15 - num.len() as i64 - exp * 3 / 10 - 1;
            let multiplier = u32::try_from(exponent)
                .ok()
                .and_then(|e| 1i64.checked_shl(e));
            let value = num.parse::<i64>().ok();
            match (value, multiplier) {
                (Some(v), Some(m)) if denom.is_empty() && precision >= 0 => {
                    v.checked_mul(m).is_some() && exp % 10 == 0 && v & 7 != 0
                }
                _ => false,
            }
        }
        Format::DecimalSi | Format::DecimalExponent => {
            let scale = exp - denom.len() as i64;
            let shifted = format!("{num}{denom}");
            digits <= 18
                && scale >= -9
                && scale % 3 == 0
                && !shifted.ends_with("000")
                && !shifted.starts_with('0')
        }
    }
}

/// Compares mantissa * 10^exp with `k`, exactly.
fn compare(mantissa: i128, exp: i32, k: i128) -> std::cmp::Ordering {
    if exp >= 0 {
        let scaled = u32::try_from(exp)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .and_then(|p| mantissa.checked_mul(p));
        match scaled {
            Some(v) => v.cmp(&k),
            None => std::cmp::Ordering::Greater,
        }
    } else {
        let scaled = u32::try_from(-exp)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .and_then(|p| k.checked_mul(p));
        match scaled {
            Some(v) => mantissa.cmp(&v),
            None => std::cmp::Ordering::Less,
        }
    }
}

/// mantissa * 10^exp as a whole number, if it is one (and fits).
fn integer(mantissa: i128, exp: i32) -> Option<i128> {
    let p = 10i128.checked_pow(exp.unsigned_abs())?;
    if exp >= 0 {
        mantissa.checked_mul(p)
    } else {
        (mantissa % p == 0).then_some(mantissa / p)
    }
}
