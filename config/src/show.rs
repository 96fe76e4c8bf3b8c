//! Text without `core::fmt`. Everything this crate prints — error lines, the summary,
//! addresses — is written once, through [`Show`], to an [`Out`]: the library's line buffer,
//! or a `core::fmt::Formatter` for the command (every `Show` type is also `Display`).
//! `core::fmt`'s machinery (argument tables, padding, integer formatting) would be a third of
//! the library's code, and the library loads into every process it is preloaded into.

use core::fmt;

/// Where text goes. An `Out` takes what fits and drops the rest; it never fails.
pub trait Out {
    fn text(&mut self, text: &str);
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
    ascii(out, digits.get(start..).unwrap_or(&[]));
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
    ascii(out, digits.get(start..).unwrap_or(&[]));
}

/// Bytes known to be ASCII.
fn ascii<O: Out>(out: &mut O, bytes: &[u8]) {
    if let Ok(text) = core::str::from_utf8(bytes) {
        out.text(text);
    }
}

/// A `Formatter` as an [`Out`], keeping its first error.
pub struct FormatterOut<'a, 'b> {
    formatter: &'a mut fmt::Formatter<'b>,
    result: fmt::Result,
}

impl Out for FormatterOut<'_, '_> {
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
        fn text(&mut self, text: &str) {
            self.push_str(text);
        }
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
