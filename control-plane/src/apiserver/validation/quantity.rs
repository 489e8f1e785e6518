//! `resource.Quantity` as upstream parses, compares and prints it (`"1000m"` is stored as `"1"`,
//! `"1024Mi"` as `"1Gi"`), for canonical storage and for limit/request checks.

use std::cmp::Ordering;

/// Upstream's message when a quantity does not parse.
pub(crate) const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// How a quantity's suffix reads: decimal SI ("k", "m"), binary SI ("Ki") or an exponent ("e3").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity: `±mant × 10^scale`, with the suffix family it was written in.
#[derive(Clone, Debug)]
pub(crate) struct Quantity {
    neg: bool,
    mant: u128,
    scale: i32,
    format: Format,
    /// Too large for exact arithmetic: printed as given, compared approximately.
    big: Option<(String, f64)>,
}

const MAX_DIGITS: usize = 30;

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

impl Quantity {
    /// Parses as upstream's `ParseQuantity`; Err carries upstream's message.
    pub(crate) fn parse(input: &str) -> Result<Quantity, &'static str> {
        if input.is_empty() {
            return Err(FORMAT_ERROR);
        }
        let (neg, num, denom, suffix) = split(input)?;
        let (base, exp, format) = interpret(suffix)
            .filter(|&(_, exp, format)| {
                format != Format::DecimalExponent || (-1000..=1000).contains(&exp)
            })
            .ok_or("unable to parse quantity's suffix")?;
        let digits = format!("{num}{denom}");
        let digits = digits.trim_start_matches('0');
        let approx = || -> f64 {
            let v: f64 = format!("{num}.{denom}").parse().unwrap_or(f64::MAX);
            let m = if base == 2 {
                2f64.powi(exp)
            } else {
                10f64.powi(exp)
            };
            if neg {
                -v * m
            } else {
                v * m
            }
        };
        let big = |format| Quantity {
            neg,
            mant: 0,
            scale: 0,
            format,
            big: Some((input.to_string(), approx())),
        };
        if digits.len() > MAX_DIGITS {
            return Ok(big(format));
        }
        let mut mant: u128 = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| "unable to parse numeric part of quantity")?
        };
        let denom_len = i32::try_from(denom.len()).unwrap_or(i32::MAX);
        let mut scale;
        if base == 2 {
            let Some(m) = u32::try_from(exp)
                .ok()
                .and_then(|e| 2u128.checked_pow(e))
                .and_then(|f| mant.checked_mul(f))
            else {
                return Ok(big(format));
            };
            mant = m;
            scale = -denom_len;
        } else {
            scale = exp.saturating_sub(denom_len);
        }
        if scale < -9 && mant != 0 {
            let Some(d) = pow10(u32::try_from(-9 - scale).unwrap_or(u32::MAX)) else {
                mant = 1;
                scale = -9;
                return Ok(Quantity::finish(neg, mant, scale, format));
            };
            mant = mant.div_ceil(d);
            scale = -9;
        }
        Ok(Quantity::finish(neg, mant, scale, format))
    }

    /// Zero, as an absent quantity compares.
    pub(crate) fn zero() -> Quantity {
        Quantity::finish(false, 0, 0, Format::DecimalSi)
    }

    fn finish(neg: bool, mant: u128, scale: i32, format: Format) -> Quantity {
        let mut q = Quantity {
            neg: neg && mant != 0,
            mant,
            scale,
            format,
            big: None,
        };
        if q.format == Format::BinarySi && !q.is_zero() && q.cmp_abs_one() == Ordering::Less {
            q.format = Format::DecimalSi;
        }
        q
    }

    fn cmp_abs_one(&self) -> Ordering {
        self.abs_cmp_int(1)
    }

    fn abs_cmp_int(&self, n: u128) -> Ordering {
        if self.scale >= 0 {
            match pow10(self.scale.unsigned_abs()).and_then(|p| self.mant.checked_mul(p)) {
                Some(v) => v.cmp(&n),
                None => Ordering::Greater,
            }
        } else {
            match pow10(self.scale.unsigned_abs()).and_then(|p| n.checked_mul(p)) {
                Some(v) => self.mant.cmp(&v),
                None => Ordering::Less,
            }
        }
    }

    /// Exactly zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.big.is_none() && self.mant == 0
    }

    /// Strictly greater than zero.
    pub(crate) fn is_positive(&self) -> bool {
        !self.is_zero() && !self.is_negative()
    }

    /// The sum of two quantities, in the format of the first.
    pub(crate) fn add(&self, other: &Quantity) -> Quantity {
        let exact = || -> Option<Quantity> {
            if self.big.is_some() || other.big.is_some() {
                return None;
            }
            let scale = self.scale.min(other.scale);
            let lift = |q: &Quantity| -> Option<i128> {
                let m = i128::try_from(q.mant).ok()?;
                let p = i128::try_from(pow10(u32::try_from(q.scale - scale).ok()?)?).ok()?;
                let v = m.checked_mul(p)?;
                Some(if q.neg { -v } else { v })
            };
            let sum = lift(self)?.checked_add(lift(other)?)?;
            Some(Quantity::finish(
                sum < 0,
                sum.unsigned_abs(),
                scale,
                self.format,
            ))
        };
        exact().unwrap_or_else(|| {
            let v = self.approx() + other.approx();
            Quantity {
                neg: v < 0.0,
                mant: 0,
                scale: 0,
                format: self.format,
                big: Some((v.to_string(), v)),
            }
        })
    }

    /// Strictly less than zero.
    pub(crate) fn is_negative(&self) -> bool {
        match &self.big {
            Some((_, f)) => *f < 0.0,
            None => self.neg,
        }
    }

    /// Whether the value is a whole number (upstream: `MilliValue() % 1000 == 0`).
    pub(crate) fn is_integer(&self) -> bool {
        if self.big.is_some() || self.scale >= 0 {
            return true;
        }
        pow10(self.scale.unsigned_abs()).is_some_and(|p| self.mant.is_multiple_of(p))
    }

    fn approx(&self) -> f64 {
        if let Some((_, f)) = &self.big {
            return *f;
        }
        let v = self.mant as f64 * 10f64.powi(self.scale);
        if self.neg {
            -v
        } else {
            v
        }
    }

    /// Rounds away from zero to `scale` (upstream's `RoundUp`, used with -3 on resource lists).
    pub(crate) fn round_up(&mut self, scale: i32) {
        if self.big.is_some() || self.scale >= scale || self.mant == 0 {
            return;
        }
        match pow10(u32::try_from(scale - self.scale).unwrap_or(u32::MAX)) {
            Some(d) => self.mant = self.mant.div_ceil(d),
            None => self.mant = 1,
        }
        self.scale = scale;
    }

    /// The canonical text upstream stores and prints (`Quantity.String()`).
    pub(crate) fn canonical(&self) -> String {
        if let Some((s, _)) = &self.big {
            return s.clone();
        }
        if self.mant == 0 {
            return "0".to_string();
        }
        let sign = if self.neg { "-" } else { "" };
        if self.format == Format::BinarySi && self.abs_cmp_int(1024) != Ordering::Less {
            if let Some(int) = self.integer_value() {
                let (mut amount, mut times) = (int, 0);
                while times < 6 && amount % 1024 == 0 {
                    amount /= 1024;
                    times += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][times];
                return format!("{sign}{amount}{suffix}");
            }
        }
        let (mut amount, mut exp) = (self.mant, self.scale);
        while amount % 10 == 0 {
            amount /= 10;
            exp += 1;
        }
        while exp.rem_euclid(3) != 0 {
            match amount.checked_mul(10) {
                Some(a) => amount = a,
                None => break,
            }
            exp -= 1;
        }
        let suffix = if self.format == Format::DecimalExponent {
            if exp == 0 {
                String::new()
            } else {
                format!("e{exp}")
            }
        } else {
            match exp {
                -9 => "n".to_string(),
                -6 => "u".to_string(),
                -3 => "m".to_string(),
                0 => String::new(),
                3 => "k".to_string(),
                6 => "M".to_string(),
                9 => "G".to_string(),
                12 => "T".to_string(),
                15 => "P".to_string(),
                18 => "E".to_string(),
                _ => format!("e{exp}"),
            }
        };
        format!("{sign}{amount}{suffix}")
    }

    fn integer_value(&self) -> Option<u128> {
        if self.scale >= 0 {
            pow10(self.scale.unsigned_abs()).and_then(|p| self.mant.checked_mul(p))
        } else {
            let p = pow10(self.scale.unsigned_abs())?;
            self.mant.is_multiple_of(p).then(|| self.mant / p)
        }
    }

    /// Numeric comparison.
    pub(crate) fn cmp(&self, other: &Quantity) -> Ordering {
        if self.big.is_some() || other.big.is_some() {
            return self
                .approx()
                .partial_cmp(&other.approx())
                .unwrap_or(Ordering::Equal);
        }
        match (self.neg, other.neg) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.scale.min(other.scale);
        let lift = |q: &Quantity| {
            pow10(u32::try_from(q.scale - scale).unwrap_or(u32::MAX))
                .and_then(|p| q.mant.checked_mul(p))
        };
        let ord = match (lift(self), lift(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self
                .approx()
                .abs()
                .partial_cmp(&other.approx().abs())
                .unwrap_or(Ordering::Equal),
        };
        if self.neg {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// Upstream's `parseQuantityString`: whether negative, numerator (leading zeros gone),
/// denominator and suffix.
pub(crate) fn split(s: &str) -> Result<(bool, &str, &str, &str), &'static str> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut neg = false;
    if pos < end && (b[0] == b'-' || b[0] == b'+') {
        neg = b[0] == b'-';
        pos += 1;
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok((neg, "0", "", ""));
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    let num = if num.is_empty() { "0" } else { num };
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let d_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d_start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(FORMAT_ERROR);
    }
    Ok((neg, num, denom, &s[suffix_start..]))
}

/// Upstream's suffix table: (base, exponent, format).
pub(crate) fn interpret(suffix: &str) -> Option<(i32, i32, Format)> {
    let dec = |e| Some((10, e, Format::DecimalSi));
    let bin = |e| Some((2, e, Format::BinarySi));
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            Some((10, rest.parse().ok()?, Format::DecimalExponent))
        }
    }
}

/// The quantity in a JSON value (string or number), as upstream decodes it.
pub(crate) fn from_json(v: &serde_json::Value) -> Option<Result<Quantity, &'static str>> {
    match v {
        serde_json::Value::String(s) => Some(Quantity::parse(s)),
        serde_json::Value::Number(n) => Some(Quantity::parse(&n.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .map(|q| q.canonical())
            .unwrap_or_default()
    }

    #[test]
    fn canonical_forms_match_upstream() {
        for (input, want) in [
            ("0", "0"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("512", "512"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
            ("1.5Ki", "1536"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1e4", "10e3"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("123Mi", "123Mi"),
            ("1G", "1G"),
            ("-1", "-1"),
            ("+5", "5"),
            ("0.0000000001", "1n"),
            ("100n", "100n"),
            ("1.", "1"),
        ] {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn bad_quantities_are_rejected() {
        for bad in ["", "abc", "1.2.3", "1Q", "1 Gi", "--1", "1Gib"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comparison_and_rounding() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("1").cmp(&q("1000m")), Ordering::Equal);
        assert_eq!(q("2").cmp(&q("1Gi")), Ordering::Less);
        assert_eq!(q("-1").cmp(&q("0")), Ordering::Less);
        assert_eq!(q("500m").cmp(&q("0.4")), Ordering::Greater);
        let mut r = q("100n");
        r.round_up(-3);
        assert_eq!(r.canonical(), "1m");
        assert!(q("2").is_integer());
        assert!(!q("1500m").is_integer());
    }
}
