//! Text without `core::fmt`. Everything this crate prints — error lines, the summary,
//! addresses — is written once, through [`Show`], to an [`Out`]: the library's line buffer,
//! or a `core::fmt::Formatter` for the command (every `Show` type is also `Display`).
//! `core::fmt`'s machinery (argument tables, padding, integer formatting) would be a third of
//! the library's code, and the library loads into every process it is preloaded into.

use core::fmt;

/// Where text goes. An `Out` takes what fits and drops the rest; it never fails.
///
/// Its primitive is bytes: what the library shows is UTF-8 where it comes from this crate, and
/// otherwise bytes of the process as they are (a path, an LD_PRELOAD list), which it could
/// only make a `str` with `core::str::from_utf8` and its tables. An `Out` that needs a `str`
/// (a `Formatter`) never passes on bytes that are not UTF-8.
pub trait Out {
    fn bytes(&mut self, bytes: &[u8]);

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }
}

/// Something that writes itself as text.
pub trait Show {
    fn show<O: Out>(&self, out: &mut O);
}

/// `value` in decimal.
#[inline(never)]
pub fn decimal<O: Out>(out: &mut O, value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            // `rest % 10` is below 10.
            *digit = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || start == 0 {
            break;
        }
    }
    out.bytes(digits.get(start..).unwrap_or(&[]));
}

/// `value` in decimal, with a `-` when negative.
pub fn signed<O: Out>(out: &mut O, value: i64) {
    if value < 0 {
        out.text("-");
    }
    decimal(out, value.unsigned_abs());
}

/// `value` in lower-case hexadecimal, at least `width` digits (`{:x}`, `{:02x}`).
#[inline(never)]
pub fn hex<O: Out>(out: &mut O, value: u32, width: usize) {
    let mut digits = [0u8; 8];
    let mut start = digits.len();
    let mut rest = value;
    while start > 0 && (rest != 0 || digits.len() - start < width.max(1)) {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b"0123456789abcdef"
                .get((rest & 0xf) as usize)
                .copied()
                .unwrap_or(b'0');
        }
        rest >>= 4;
    }
    out.bytes(digits.get(start..).unwrap_or(&[]));
}

/// A `Formatter` as an [`Out`], keeping its first error.
pub struct FormatterOut<'a, 'b> {
    formatter: &'a mut fmt::Formatter<'b>,
    result: fmt::Result,
}

impl Out for FormatterOut<'_, '_> {
    /// Valid UTF-8 as it is, anything else as U+FFFD (what this crate shows is UTF-8: the
    /// replacement is a last resort, never a panic or invalid text in a `String`).
    fn bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.utf8_chunks() {
            self.text(chunk.valid());
            if !chunk.invalid().is_empty() {
                self.text("\u{fffd}");
            }
        }
    }

    fn text(&mut self, text: &str) {
        if self.result.is_ok() {
            self.result = self.formatter.write_str(text);
        }
    }
}

/// `Display` for a [`Show`] type (the command's `format!`, `to_string`).
pub fn display<T: Show + ?Sized>(value: &T, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut out = FormatterOut {
        formatter,
        result: Ok(()),
    };
    value.show(&mut out);
    out.result
}

/// Implements `Display` through [`Show`] for each type.
macro_rules! display_via_show {
    ($($type:ty),* $(,)?) => {
        $(impl core::fmt::Display for $type {
            fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                $crate::show::display(self, formatter)
            }
        })*
    };
}
pub(crate) use display_via_show;

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    impl Out for String {
        fn bytes(&mut self, bytes: &[u8]) {
            self.push_str(std::str::from_utf8(bytes).expect("shown as UTF-8"));
        }
    }

    #[test]
    fn a_formatter_gets_utf8_whatever_the_bytes() {
        use crate::text::Verbatim;
        use std::string::ToString;
        assert_eq!(Verbatim("aé\u{85}".as_bytes()).to_string(), "aé\u{85}");
        assert_eq!(
            Verbatim(b"a\xffb\xe2\x82").to_string(),
            "a\u{fffd}b\u{fffd}"
        );
    }

    #[test]
    fn numbers_read_like_core_fmt() {
        for value in [0, 1, 9, 10, 99, 100, 65535, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            decimal(&mut out, value);
            assert_eq!(out, std::format!("{value}"));
        }
        for value in [0, -1, 7, i64::MIN, i64::MAX] {
            let mut out = String::new();
            signed(&mut out, value);
            assert_eq!(out, std::format!("{value}"));
        }
        for value in [0, 1, 0xf, 0x10, 0xff, 0xfe80, 0x10ffff, u32::MAX] {
            for width in [0, 1, 2, 8] {
                let mut out = String::new();
                hex(&mut out, value, width);
                assert_eq!(out, std::format!("{value:0width$x}"), "{value} {width}");
            }
        }
    }
}
