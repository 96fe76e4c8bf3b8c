//! Parsers for one value each. Every function is total: `Some` for an accepted value, `None`
//! for anything else (the caller names the variable and what is accepted).

use crate::text::split;

/// A string of ASCII digits only: no sign, no space, no `0x`, no exponent. Rejects overflow.
fn whole_number(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |number, digit| {
        number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Splits `90s` into (90, "s"); the unit may be empty.
fn number_and_unit(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let (number, unit) = (text.get(..digits)?, text.get(digits..)?);
    Some((whole_number(number)?, unit))
}

fn within(number: u64, min: u32, max: u32) -> Option<u32> {
    u32::try_from(number)
        .ok()
        .filter(|number| (min..=max).contains(number))
}

/// Seconds: `90` (libkeepalive's plain integer), `90s`, `2m`, `1h`; within `min..=max`.
pub fn seconds(text: &[u8], min: u32, max: u32) -> Option<u32> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit {
        b"" | b"s" => 1,
        b"m" => 60,
        b"h" => 3600,
        _ => return None,
    };
    within(number.checked_mul(factor)?, min, max)
}

/// Milliseconds: a plain integer is milliseconds (the kernel's unit of TCP_USER_TIMEOUT), or
/// `1500ms`, `10s`, `2m`, `1h`; within `min..=max`.
pub fn milliseconds(text: &[u8], min: u32, max: u32) -> Option<u32> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit {
        b"" | b"ms" => 1,
        b"s" => 1_000,
        b"m" => 60_000,
        b"h" => 3_600_000,
        _ => return None,
    };
    within(number.checked_mul(factor)?, min, max)
}

/// A plain count within `min..=max`.
pub fn count(text: &[u8], min: u32, max: u32) -> Option<u32> {
    within(whole_number(text)?, min, max)
}

/// on/off, 1/0, yes/no, true/false, in any case.
pub fn switch(text: &[u8]) -> Option<bool> {
    one_of(text, "on|1|yes|true|off|0|no|false").map(|index| index < 4)
}

/// One of `words` (separated by `|`), in any case; returns its index. (Word lists are one
/// string each, not arrays of strings: an array is a pointer per word for ld.so to relocate
/// in every process the library loads into.)
pub fn one_of(text: &[u8], words: &str) -> Option<usize> {
    // A plain byte loop: the library runs it at every load, and the splitter with
    // `eq_ignore_ascii_case` is four times the code.
    let (mut index, mut at, mut matching) = (0, 0, true);
    for &byte in words.as_bytes() {
        if byte == b'|' {
            if matching && at == text.len() {
                return Some(index);
            }
            (index, at, matching) = (index + 1, 0, true);
        } else {
            matching &= text
                .get(at)
                .is_some_and(|&given| given.eq_ignore_ascii_case(&byte));
            at += 1;
        }
    }
    (matching && at == text.len()).then_some(index)
}

/// Word `index` of `words` (separated by `|`); empty past the last.
pub fn word(words: &'static str, index: usize) -> &'static str {
    // Found by the byte splitter, cut from `words` where it starts (a `str` again).
    let mut start = 0;
    for (at, word) in split(words.as_bytes(), b'|').enumerate() {
        if at == index {
            return words.get(start..start + word.len()).unwrap_or("");
        }
        start += word.len() + 1;
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_matches_whole_words_in_any_case() {
        let words = "no|yes|tighten";
        assert_eq!(one_of(b"no", words), Some(0));
        assert_eq!(one_of(b"YES", words), Some(1));
        assert_eq!(one_of(b"Tighten", words), Some(2));
        for other in [
            &b""[..],
            b"n",
            b"noo",
            b"ye",
            b"yess",
            b"tight",
            b"no|yes",
            b"|",
        ] {
            assert_eq!(one_of(other, words), None, "{other:?}");
        }
        assert_eq!(one_of(b"", "a||b"), Some(1));
        assert_eq!(one_of(b"\xc3\xa9", "\u{e9}"), Some(0));
    }

    #[test]
    fn seconds_accepts_plain_and_units() {
        assert_eq!(seconds(b"90", 1, 32767), Some(90));
        assert_eq!(seconds(b"90s", 1, 32767), Some(90));
        assert_eq!(seconds(b"2m", 1, 32767), Some(120));
        assert_eq!(seconds(b"1h", 1, 32767), Some(3600));
        assert_eq!(seconds(b"32767", 1, 32767), Some(32767));
        assert_eq!(seconds(b"010", 1, 32767), Some(10));
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
            assert_eq!(seconds(junk.as_bytes(), 1, 32767), None, "{junk:?}");
        }
    }

    #[test]
    fn milliseconds_units() {
        assert_eq!(milliseconds(b"1500", 1, i32::MAX as u32), Some(1500));
        assert_eq!(milliseconds(b"1500ms", 1, i32::MAX as u32), Some(1500));
        assert_eq!(milliseconds(b"10s", 1, i32::MAX as u32), Some(10_000));
        assert_eq!(milliseconds(b"2m", 1, i32::MAX as u32), Some(120_000));
        assert_eq!(milliseconds(b"0", 1, i32::MAX as u32), None);
        assert_eq!(milliseconds(b"1000h", 1, i32::MAX as u32), None);
        assert_eq!(milliseconds(b"3sec", 1, i32::MAX as u32), None);
    }

    #[test]
    fn switches_in_any_case() {
        assert_eq!(switch(b"ON"), Some(true));
        assert_eq!(switch(b"Yes"), Some(true));
        assert_eq!(switch(b"0"), Some(false));
        assert_eq!(switch(b"FALSE"), Some(false));
        assert_eq!(switch(b"enable"), None);
        assert_eq!(switch(b""), None);
    }

    #[test]
    fn words_by_index() {
        for (index, word) in ["a", "bc", "", "é"].into_iter().enumerate() {
            assert_eq!(super::word("a|bc||é", index), word);
        }
        assert_eq!(super::word("a|bc||é", 4), "");
        assert_eq!(one_of(b"BC", "a|bc||é"), Some(1));
        assert_eq!(one_of(b"", "a|bc||é"), Some(2));
        assert_eq!(one_of(b"\xc3", "a|bc||é"), None);
    }

    #[test]
    fn counts() {
        assert_eq!(count(b"127", 1, 127), Some(127));
        assert_eq!(count(b"128", 1, 127), None);
        assert_eq!(count(b"3s", 1, 127), None);
    }
}
