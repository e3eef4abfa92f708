//! Memory sizes written for people, such as `2GiB`, `1.5 GiB`, `512M` or `2048`.
//!
//! Units follow the Kubernetes resource quantity convention, so a value copied
//! from a pod spec means the same here. `K`, `M`, `G`, `T` and `KB`, `MB`,
//! `GB`, `TB` are powers of 1000. `Ki`, `Mi`, `Gi`, `Ti` and `KiB`, `MiB`,
//! `GiB`, `TiB` are powers of 1024. A bare number, or one followed by `B`, is
//! bytes.
//!
//! Units are case-insensitive, which differs from Kubernetes in one case:
//! there `512m` means 0.512 bytes (milli), here it means 512 megabytes.
//! A fraction such as `1.5GiB` is allowed and rounds down to whole bytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// The maximum number of fraction digits, so that the fraction times the
/// largest multiplier (2^40) still fits in a u128.
const MAX_FRACTION_DIGITS: usize = 24;

/// Units that `Display` tries for exact output, largest first.
const DISPLAY_UNITS: [(u64, &str); 8] = [
    (TIB, "TiB"),
    (1_000_000_000_000, "TB"),
    (GIB, "GiB"),
    (1_000_000_000, "GB"),
    (MIB, "MiB"),
    (1_000_000, "MB"),
    (KIB, "KiB"),
    (1_000, "KB"),
];

/// Units that `Display` uses for rounded output, largest first.
const BINARY_UNITS: [(u64, &str); 4] = [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")];

/// A number of bytes that parses from and displays as a human-readable size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(count: u64) -> Self {
        Self(count * MIB)
    }

    pub const fn gib(count: u64) -> Self {
        Self(count * GIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// An invalid memory size; every variant contains the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseByteSizeError {
    #[error("invalid memory size {input:?}: it is empty; write a number with an optional unit, such as 512MiB or 2GiB")]
    Empty { input: String },

    #[error("invalid memory size {input:?}: {number:?} is not a non-negative decimal number; write a number with an optional unit, such as 512MiB or 1.5GiB")]
    InvalidNumber { input: String, number: String },

    #[error("invalid memory size {input:?}: unknown unit {unit:?}; use B, K, KB, Ki, KiB, M, MB, Mi, MiB, G, GB, Gi, GiB, T, TB, Ti or TiB")]
    UnknownUnit { input: String, unit: String },

    #[error(
        "invalid memory size {input:?}: larger than the maximum of {} bytes",
        u64::MAX
    )]
    TooLarge { input: String },
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ParseByteSizeError::Empty {
                input: input.to_owned(),
            });
        }

        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim_start();

        let multiplier = unit_multiplier(unit).ok_or_else(|| ParseByteSizeError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
        })?;
        let bytes = scale(number, multiplier).map_err(|error| match error {
            ScaleError::Invalid => ParseByteSizeError::InvalidNumber {
                input: input.to_owned(),
                number: number.to_owned(),
            },
            ScaleError::Overflow => ParseByteSizeError::TooLarge {
                input: input.to_owned(),
            },
        })?;
        Ok(ByteSize(bytes))
    }
}

/// Returns the number of bytes in one `unit`, ignoring case.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => KIB,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => MIB,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => GIB,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => TIB,
        _ => return None,
    };
    Some(multiplier)
}

enum ScaleError {
    Invalid,
    Overflow,
}

/// Multiplies a decimal `number` such as `1.5` by `multiplier` exactly, in
/// integer arithmetic, rounding the result down to whole bytes.
fn scale(number: &str, multiplier: u64) -> Result<u64, ScaleError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let has_dot = number.contains('.');
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || (has_dot && fraction.is_empty())
        || !digits_only(whole)
        || !digits_only(fraction)
        || fraction.len() > MAX_FRACTION_DIGITS
    {
        return Err(ScaleError::Invalid);
    }

    let whole: u128 = whole.parse().map_err(|_| ScaleError::Overflow)?;
    let mut bytes = whole
        .checked_mul(u128::from(multiplier))
        .ok_or(ScaleError::Overflow)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().map_err(|_| ScaleError::Invalid)?;
        let denominator = 10u128.pow(fraction.len() as u32);
        bytes += numerator * u128::from(multiplier) / denominator;
    }
    u64::try_from(bytes).map_err(|_| ScaleError::Overflow)
}

impl fmt::Display for ByteSize {
    /// Writes the size exactly in the largest unit that needs at most two
    /// decimals (`2GiB`, `1.5GiB`, `512MB`, `1.5KB`, `512B`). Other sizes are
    /// rounded to two decimals in a binary unit (`117.74MiB`), so only exact
    /// output parses back to the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let exact = DISPLAY_UNITS
            .iter()
            .find(|&&(unit, _)| bytes >= unit && (u128::from(bytes) * 100) % u128::from(unit) == 0);
        if let Some(&(unit, name)) = exact {
            let whole = bytes / unit;
            let hundredths = (u128::from(bytes % unit) * 100 / u128::from(unit)) as u64;
            return match hundredths {
                0 => write!(f, "{whole}{name}"),
                h if h % 10 == 0 => write!(f, "{whole}.{}{name}", h / 10),
                h => write!(f, "{whole}.{h:02}{name}"),
            };
        }

        let Some(&(unit, name)) = BINARY_UNITS.iter().find(|&&(unit, _)| bytes >= unit) else {
            return write!(f, "{bytes}B");
        };
        let rounded = format!("{:.2}", bytes as f64 / unit as f64);
        let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{trimmed}{name}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    /// Accepts a string such as `"2GiB"` or an integer number of bytes.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a memory size such as \"2GiB\" or \"512MiB\", or a number of bytes")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ByteSize, E> {
        value.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
        u64::try_from(value)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid memory size {value}: it is negative")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, u64)] = &[
            ("2048", 2048),
            ("0", 0),
            ("2048B", 2048),
            ("2048 b", 2048),
            ("2GiB", 2 * GIB),
            ("2gib", 2 * GIB),
            ("2Gi", 2 * GIB),
            ("1.5GiB", 3 * GIB / 2),
            ("1.5 GiB", 3 * GIB / 2),
            ("  1.5 GiB  ", 3 * GIB / 2),
            ("512MiB", 512 * MIB),
            ("512Mi", 512 * MIB),
            ("512M", 512_000_000),
            ("512MB", 512_000_000),
            ("512m", 512_000_000),
            ("1G", 1_000_000_000),
            ("1GB", 1_000_000_000),
            ("1gb", 1_000_000_000),
            ("4K", 4_000),
            ("4KB", 4_000),
            ("4k", 4_000),
            ("4KiB", 4 * KIB),
            ("1T", 1_000_000_000_000),
            ("1TiB", TIB),
            ("1.5KB", 1_500),
            ("1.0009KB", 1_000),
            ("0.5", 0),
            ("1.3MiB", 1_363_148),
            ("16777215TiB", 16_777_215 * TIB),
            ("18446744073709551615", u64::MAX),
        ];
        for &(input, expected) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(expected)), "{input}");
        }
    }

    #[test]
    fn parse_errors_name_input() {
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("GiB", "is not a non-negative decimal number"),
            ("-1GiB", "unknown unit"),
            ("1.GiB", "is not a non-negative decimal number"),
            (".5GiB", "is not a non-negative decimal number"),
            ("1.2.3GiB", "is not a non-negative decimal number"),
            ("2XB", "unknown unit \"XB\""),
            ("2 GiB extra", "unknown unit \"GiB extra\""),
            ("2GiBB", "unknown unit"),
            ("16777216TiB", "larger than the maximum"),
            ("18446744073709551616", "larger than the maximum"),
            (
                "99999999999999999999999999999999999999999",
                "larger than the maximum",
            ),
        ];
        for &(input, expected) in cases {
            let message = input.parse::<ByteSize>().unwrap_err().to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(
                message.contains(&format!("{input:?}")),
                "{input:?}: {message}"
            );
        }
    }

    #[test]
    fn display_table() {
        let cases: &[(u64, &str)] = &[
            (0, "0B"),
            (512, "512B"),
            (999, "999B"),
            (1_000, "1KB"),
            (1_500, "1.5KB"),
            (2_048, "2KiB"),
            (512 * MIB, "512MiB"),
            (512_000_000, "512MB"),
            (2 * GIB, "2GiB"),
            (3 * GIB / 2, "1.5GiB"),
            (5 * GIB / 4, "1.25GiB"),
            (1_000_000_000, "1GB"),
            (TIB, "1TiB"),
            (123_456_789, "117.74MiB"),
            (1_025, "1KiB"),
            (1_000_000, "1MB"),
            (4_096_000, "4000KiB"),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(ByteSize(bytes).to_string(), expected, "{bytes}");
        }
    }

    #[test]
    fn display_exact_round_trips() {
        for bytes in [1_000, 1_500, 2_048, 512 * MIB, 3 * GIB / 2, 1_000_000_000] {
            let shown = ByteSize(bytes).to_string();
            assert_eq!(shown.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{shown}");
        }
    }

    #[test]
    fn deserialize_string_or_integer() {
        #[derive(serde::Deserialize)]
        struct Config {
            limit: ByteSize,
        }

        let from_string: Config = toml::from_str("limit = \"1.5GiB\"").unwrap();
        assert_eq!(from_string.limit, ByteSize(3 * GIB / 2));

        let from_integer: Config = toml::from_str("limit = 2048").unwrap();
        assert_eq!(from_integer.limit, ByteSize(2048));

        let from_json: ByteSize = serde_json::from_str("\"512MiB\"").unwrap();
        assert_eq!(from_json, ByteSize::mib(512));
    }

    #[test]
    fn deserialize_errors_name_value() {
        #[derive(Debug, serde::Deserialize)]
        struct Config {
            #[allow(dead_code)]
            limit: ByteSize,
        }

        let error = toml::from_str::<Config>("limit = \"2XB\"").unwrap_err();
        assert!(error.to_string().contains("\"2XB\""), "{error}");

        let error = toml::from_str::<Config>("limit = -5").unwrap_err();
        assert!(error.to_string().contains("-5"), "{error}");

        let error = toml::from_str::<Config>("limit = 1.5").unwrap_err();
        assert!(error.to_string().contains("memory size"), "{error}");
    }
}
