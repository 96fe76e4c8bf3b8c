//! Text in diagnostics: a value as the user gave it, quoted, escaped and elided, so that an
//! error line always keeps its shape, `VAR="…"…; not applied`, whatever the value holds.

use crate::show::{Out, Show, display_via_show, hex};
use crate::utf8;

/// How many bytes of a value an error line shows before eliding the rest.
pub const SHOWN_BYTES: usize = 64;

/// A value in double quotes: printable characters as they are, `"` `\` and control characters
/// escaped, bytes that are not UTF-8 as `\xNN`, and `…` after the first [`SHOWN_BYTES`].
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a [u8]);

impl Show for Quoted<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let shown = self.0.get(..SHOWN_BYTES).unwrap_or(self.0);
        out.text("\"");
        // Runs that need no escape go out as they are (valid UTF-8, so an `Out` that needs a
        // `str` gets one); each sequence that needs one ends the run before it.
        let (mut run, mut at) = (0, 0);
        while let Some(rest) = shown.get(at..)
            && !rest.is_empty()
        {
            let (length, valid) = utf8::sequence(rest);
            if let Some(escape) = Escape::of(rest, length, valid) {
                out.bytes(shown.get(run..at).unwrap_or(&[]));
                escape.show(out);
                run = at + length;
            }
            at += length;
        }
        out.bytes(shown.get(run..).unwrap_or(&[]));
        if shown.len() < self.0.len() {
            out.text("…");
        }
        out.text("\"");
    }
}

/// A sequence [`Quoted`] does not write as it is.
enum Escape<'a> {
    Text(&'static str),
    /// A control character as `\u{…}`.
    Control(u8),
    /// Bytes that are not UTF-8, each as `\xNN`.
    Bytes(&'a [u8]),
}

impl<'a> Escape<'a> {
    /// The escape of the sequence of `length` bytes at the start of `rest`, if it needs one.
    fn of(rest: &'a [u8], length: usize, valid: bool) -> Option<Self> {
        let first = rest.first().copied()?;
        Some(match first {
            _ if !valid => Self::Bytes(rest.get(..length)?),
            b'"' => Self::Text("\\\""),
            b'\\' => Self::Text("\\\\"),
            b'\n' => Self::Text("\\n"),
            b'\t' => Self::Text("\\t"),
            b'\r' => Self::Text("\\r"),
            0..=0x1f | 0x7f => Self::Control(first),
            // A C1 control, U+0080..U+009F: 0xc2 0x80..0x9f.
            0xc2 => match rest.get(1).copied() {
                Some(second @ 0x80..=0x9f) => Self::Control(second),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn show<O: Out>(&self, out: &mut O) {
        match *self {
            Self::Text(text) => out.text(text),
            Self::Control(control) => {
                out.text("\\u{");
                hex(out, u32::from(control), 1);
                out.text("}");
            }
            Self::Bytes(bytes) => {
                for &byte in bytes {
                    out.text("\\x");
                    hex(out, u32::from(byte), 2);
                }
            }
        }
    }
}

/// A list as the user gave it (UTF-8), unquoted, elided after [`SHOWN_BYTES`] at a character's
/// start (for summaries).
#[derive(Clone, Copy, Debug)]
pub struct Elided<'a>(pub &'a [u8]);

impl Show for Elided<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let mut end = self.0.len().min(SHOWN_BYTES);
        // Back to the start of the character at `end` (a continuation byte is 0b10xx_xxxx).
        while end > 0 && self.0.get(end).is_some_and(|&byte| byte & 0xc0 == 0x80) {
            end -= 1;
        }
        out.bytes(self.0.get(..end).unwrap_or(&[]));
        if end < self.0.len() {
            out.text("…");
        }
    }
}

/// Bytes as the process gave them (a path, a name), unquoted and unescaped: the library shows
/// them as they are, a `Formatter` gets U+FFFD for what is not UTF-8.
#[derive(Clone, Copy, Debug)]
pub struct Verbatim<'a>(pub &'a [u8]);

impl Show for Verbatim<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        out.bytes(self.0);
    }
}

display_via_show!(Quoted<'_>, Elided<'_>, Verbatim<'_>);

/// `bytes` split at every `separator` byte; like `str::split`, without its searcher's panic
/// paths. (A value split at an ASCII byte stays UTF-8 if it was.)
pub fn split(bytes: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> + Clone {
    let mut rest = Some(bytes);
    core::iter::from_fn(move || {
        let current = rest?;
        match current.iter().position(|&byte| byte == separator) {
            Some(at) => {
                rest = current.get(at + 1..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `bytes` split at the first `separator` byte.
pub fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

/// Copies `bytes` into `out` at `at`; the end of what was written, or `None` when it does not
/// fit. (`copy_from_slice` keeps a length-mismatch panic where the optimiser cannot see the
/// lengths agree.)
pub fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Option<usize> {
    let end = at.checked_add(bytes.len())?;
    let target = out.get_mut(at..end)?;
    for (slot, &byte) in target.iter_mut().zip(bytes) {
        *slot = byte;
    }
    Some(end)
}

/// What follows the last `/` of a path.
pub fn base_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&byte| byte == b'/') {
        Some(at) => path.get(at + 1..).unwrap_or(&[]),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn escapes_and_elides() {
        assert_eq!(format!("{}", Quoted(b"1e3")), "\"1e3\"");
        assert_eq!(format!("{}", Quoted(b"a\"b\\c\n")), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(format!("{}", Quoted(&[0xff, b'3'])), "\"\\xff3\"");
        // Control characters, C0 and C1, as `char::escape_debug` would not: `\u{…}`.
        assert_eq!(
            format!("{}", Quoted("\u{1}é\u{85}\u{7f}".as_bytes())),
            "\"\\u{1}é\\u{85}\\u{7f}\""
        );
        // An incomplete sequence at the end, and one in the middle.
        assert_eq!(
            format!("{}", Quoted(&[b'a', 0xe2, 0x82])),
            "\"a\\xe2\\x82\""
        );
        assert_eq!(
            format!("{}", Quoted(&[0xe2, b'b', 0xc3, 0xa9])),
            "\"\\xe2bé\""
        );
        let long = [b'x'; 10_000];
        let shown = format!("{}", Quoted(&long));
        assert_eq!(shown.len(), 1 + SHOWN_BYTES + '…'.len_utf8() + 1);
        assert!(shown.ends_with("x…\""));
        assert_eq!(format!("{}", Elided(b"ab")), "ab");
        let accents = "é".repeat(100);
        assert_eq!(
            format!("{}", Elided(accents.as_bytes())),
            format!("{}…", "é".repeat(SHOWN_BYTES / 2))
        );
        let odd = std::format!("x{accents}");
        assert_eq!(
            format!("{}", Elided(odd.as_bytes())),
            format!("x{}…", "é".repeat(SHOWN_BYTES / 2 - 1))
        );
    }

    #[test]
    fn splits_like_str_split() {
        for text in ["", ",", "a", "a,b", ",a,,b,", "é,\u{2c}x"] {
            let bytes: std::vec::Vec<&[u8]> = split(text.as_bytes(), b',').collect();
            let strs: std::vec::Vec<&[u8]> = text.split(',').map(str::as_bytes).collect();
            assert_eq!(bytes, strs, "{text:?}");
            assert_eq!(
                split_once(text.as_bytes(), b','),
                text.split_once(',')
                    .map(|(a, b)| (a.as_bytes(), b.as_bytes())),
                "{text:?}"
            );
        }
        assert_eq!(base_name(b"/usr/bin/redis-server"), b"redis-server");
        assert_eq!(base_name(b"redis-server"), b"redis-server");
        assert_eq!(base_name(b"/x/\xff/"), b"");
    }

    #[test]
    fn every_byte_of_an_invalid_sequence_is_escaped() {
        let quoted = |bytes: &[u8]| format!("{}", Quoted(bytes));
        // Overlong, surrogate, past U+10FFFF: the lead alone is the invalid sequence.
        assert_eq!(quoted(&[0xe0, 0x80, 0x80]), "\"\\xe0\\x80\\x80\"");
        assert_eq!(quoted(&[0xed, 0xa0, 0x80]), "\"\\xed\\xa0\\x80\"");
        assert_eq!(
            quoted(&[0xf4, 0x90, 0x80, 0x80]),
            "\"\\xf4\\x90\\x80\\x80\""
        );
        assert_eq!(quoted(&[0xc0, 0xaf]), "\"\\xc0\\xaf\"");
        // Truncated: at the end, and before ASCII.
        assert_eq!(quoted(&[b'a', 0xf0, 0x9f, 0x98]), "\"a\\xf0\\x9f\\x98\"");
        assert_eq!(quoted(&[0xf0, 0x9f, 0x98, b'a']), "\"\\xf0\\x9f\\x98a\"");
        assert_eq!(quoted(&[0xe2, 0x82, b'"']), "\"\\xe2\\x82\\\"\"");
        // Lone continuation bytes, between valid characters.
        assert_eq!(quoted("é".as_bytes()), "\"é\"");
        assert_eq!(quoted(&[0x80, 0xc3, 0xa9, 0xbf, b'x']), "\"\\x80é\\xbfx\"");
        // A character cut by the elision is shown as the bytes that are left.
        let mut cut = std::vec![b'x'; SHOWN_BYTES - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(quoted(&cut).ends_with("x\\xc3…\""), "{}", quoted(&cut));
    }

    /// An `Out` that keeps what it gets, and checks that each piece is UTF-8.
    struct Checked(std::vec::Vec<u8>);

    impl Out for Checked {
        fn bytes(&mut self, bytes: &[u8]) {
            assert!(core::str::from_utf8(bytes).is_ok(), "{bytes:02x?}");
            self.0.extend_from_slice(bytes);
        }
    }

    /// `Quoted` as it was written over `core::str::from_utf8` (the code as it was).
    fn quoted_over_from_utf8(value: &[u8]) -> std::string::String {
        use std::string::String;
        fn escape(out: &mut String, valid: &str) {
            let bytes = valid.as_bytes();
            let (mut run, mut at) = (0, 0);
            while let Some(&byte) = bytes.get(at) {
                let next = bytes.get(at + 1).copied().unwrap_or(0);
                let (escape, control, width) = match byte {
                    b'"' => ("\\\"", None, 1),
                    b'\\' => ("\\\\", None, 1),
                    b'\n' => ("\\n", None, 1),
                    b'\t' => ("\\t", None, 1),
                    b'\r' => ("\\r", None, 1),
                    0..=0x1f | 0x7f => ("\\u{", Some(byte), 1),
                    0xc2 if (0x80..=0x9f).contains(&next) => ("\\u{", Some(next), 2),
                    _ => {
                        at += 1;
                        continue;
                    }
                };
                out.push_str(valid.get(run..at).unwrap_or(""));
                out.push_str(escape);
                if let Some(control) = control {
                    hex(out, u32::from(control), 1);
                    out.push('}');
                }
                at += width;
                run = at;
            }
            out.push_str(valid.get(run..).unwrap_or(""));
        }
        let mut out = String::from("\"");
        let shown = value.get(..SHOWN_BYTES).unwrap_or(value);
        let mut rest = shown;
        while !rest.is_empty() {
            let (valid, invalid) = match core::str::from_utf8(rest) {
                Ok(valid) => (valid, 0),
                Err(error) => {
                    let valid = rest.get(..error.valid_up_to()).unwrap_or(&[]);
                    let invalid = error.error_len().unwrap_or(rest.len() - valid.len());
                    (core::str::from_utf8(valid).unwrap_or(""), invalid)
                }
            };
            escape(&mut out, valid);
            let after = rest.get(valid.len()..).unwrap_or(&[]);
            for &byte in after.get(..invalid).unwrap_or(after) {
                out.push_str("\\x");
                hex(&mut out, u32::from(byte), 2);
            }
            rest = after.get(invalid..).unwrap_or(&[]);
        }
        if shown.len() < value.len() {
            out.push('…');
        }
        out.push('"');
        out
    }

    #[test]
    fn quoted_is_what_it_was_over_from_utf8() {
        // Each sample alone, and where the elision cuts it.
        for sample in crate::utf8::tests::samples() {
            let mut long = std::vec![b'x'; SHOWN_BYTES - 2];
            long.extend_from_slice(&sample);
            for bytes in [&sample[..], &long] {
                let mut out = Checked(std::vec::Vec::new());
                Quoted(bytes).show(&mut out);
                assert_eq!(
                    out.0,
                    quoted_over_from_utf8(bytes).as_bytes(),
                    "{bytes:02x?}"
                );
            }
        }
    }
}
