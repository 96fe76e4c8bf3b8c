//! Parsers for one value each. Every function is total: `Some` for an accepted value, `None`
//! for anything else (the caller names the variable and what is accepted).

use crate::text::split;

/// A string of ASCII digits only: no sign, no space, no `0x`, no exponent. Rejects overflow.
fn whole_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0u64, |number, digit| {
        number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Splits `90s` into (90, "s"); the unit may be empty.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = (text.get(..digits)?, text.get(digits..)?);
    Some((whole_number(number)?, unit))
}

fn within(number: u64, min: u32, max: u32) -> Option<u32> {
    u32::try_from(number)
        .ok()
        .filter(|number| (min..=max).contains(number))
}

/// Seconds: `90` (libkeepalive's plain integer), `90s`, `2m`, `1h`; within `min..=max`.
pub fn seconds(text: &str, min: u32, max: u32) -> Option<u32> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    within(number.checked_mul(factor)?, min, max)
}

/// Milliseconds: a plain integer is milliseconds (the kernel's unit of TCP_USER_TIMEOUT), or
/// `1500ms`, `10s`, `2m`, `1h`; within `min..=max`.
pub fn milliseconds(text: &str, min: u32, max: u32) -> Option<u32> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    within(number.checked_mul(factor)?, min, max)
}

/// A plain count within `min..=max`.
pub fn count(text: &str, min: u32, max: u32) -> Option<u32> {
    within(whole_number(text)?, min, max)
}

/// on/off, 1/0, yes/no, true/false, in any case.
pub fn switch(text: &str) -> Option<bool> {
    one_of(text, "on|1|yes|true|off|0|no|false").map(|index| index < 4)
}

/// One of `words` (separated by `|`), in any case; returns its index. (Word lists are one
/// string each, not arrays of strings: an array is a pointer per word for ld.so to relocate
/// in every process the library loads into.)
pub fn one_of(text: &str, words: &str) -> Option<usize> {
    split(words, b'|').position(|word| text.eq_ignore_ascii_case(word))
}

/// Word `index` of `words` (separated by `|`); empty past the last.
pub fn word(words: &'static str, index: usize) -> &'static str {
    split(words, b'|').nth(index).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accepts_plain_and_units() {
        assert_eq!(seconds("90", 1, 32767), Some(90));
        assert_eq!(seconds("90s", 1, 32767), Some(90));
        assert_eq!(seconds("2m", 1, 32767), Some(120));
        assert_eq!(seconds("1h", 1, 32767), Some(3600));
        assert_eq!(seconds("32767", 1, 32767), Some(32767));
        assert_eq!(seconds("010", 1, 32767), Some(10));
    }

    #[test]
    fn seconds_rejects_junk_libkeepalive_accepts() {
        for junk in [
            "",
            "0",
            "32768",
            "10abc",
            "1e3",
            " 7",
            "7 ",
            "0x10",
            "-1",
            "+5",
            "1.5",
            "s",
            "10h",
            "99999999999999999999",
            "1S",
            "2 m",
            "١٢",
        ] {
            assert_eq!(seconds(junk, 1, 32767), None, "{junk:?}");
        }
    }

    #[test]
    fn milliseconds_units() {
        assert_eq!(milliseconds("1500", 1, i32::MAX as u32), Some(1500));
        assert_eq!(milliseconds("1500ms", 1, i32::MAX as u32), Some(1500));
        assert_eq!(milliseconds("10s", 1, i32::MAX as u32), Some(10_000));
        assert_eq!(milliseconds("2m", 1, i32::MAX as u32), Some(120_000));
        assert_eq!(milliseconds("0", 1, i32::MAX as u32), None);
        assert_eq!(milliseconds("1000h", 1, i32::MAX as u32), None);
        assert_eq!(milliseconds("3sec", 1, i32::MAX as u32), None);
    }

    #[test]
    fn switches_in_any_case() {
        assert_eq!(switch("ON"), Some(true));
        assert_eq!(switch("Yes"), Some(true));
        assert_eq!(switch("0"), Some(false));
        assert_eq!(switch("FALSE"), Some(false));
        assert_eq!(switch("enable"), None);
        assert_eq!(switch(""), None);
    }

    #[test]
    fn counts() {
        assert_eq!(count("127", 1, 127), Some(127));
        assert_eq!(count("128", 1, 127), None);
        assert_eq!(count("3s", 1, 127), None);
    }
}
