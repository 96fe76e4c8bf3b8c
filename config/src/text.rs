//! Text in diagnostics: a value as the user gave it, quoted, escaped and elided, so that an
//! error line always keeps its shape, `VAR="…"…; not applied`, whatever the value holds.

use crate::show::{Out, Show, display_via_show, hex};

/// How many bytes of a value an error line shows before eliding the rest.
pub const SHOWN_BYTES: usize = 64;

/// A value in double quotes: printable characters as they are, `"` `\` and control characters
/// escaped, bytes that are not UTF-8 as `\xNN`, and `…` after the first [`SHOWN_BYTES`].
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a [u8]);

impl<'a> Quoted<'a> {
    pub fn str(text: &'a str) -> Self {
        Self(text.as_bytes())
    }
}

impl Show for Quoted<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let shown = self.0.get(..SHOWN_BYTES).unwrap_or(self.0);
        out.text("\"");
        // Chunks of valid UTF-8, each followed by the bytes that are not (as `utf8_chunks`
        // has it, with the validator `from_utf8` that the library links anyway).
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
            escape(out, valid);
            let after = rest.get(valid.len()..).unwrap_or(&[]);
            for &byte in after.get(..invalid).unwrap_or(after) {
                out.text("\\x");
                hex(out, u32::from(byte), 2);
            }
            rest = after.get(invalid..).unwrap_or(&[]);
        }
        if shown.len() < self.0.len() {
            out.text("…");
        }
        out.text("\"");
    }
}

/// Valid UTF-8 with `"`, `\\` and control characters escaped.
fn escape<O: Out>(out: &mut O, valid: &str) {
    // Runs that need no escape go out as they are. Escapes are ASCII, or a C1
    // control (U+0080..U+009F: 0xc2 0x80..0x9f), so bytes are enough to find them.
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
        out.text(valid.get(run..at).unwrap_or(""));
        out.text(escape);
        if let Some(control) = control {
            hex(out, u32::from(control), 1);
            out.text("}");
        }
        at += width;
        run = at;
    }
    out.text(valid.get(run..).unwrap_or(""));
}

/// A list as the user gave it, unquoted, elided after [`SHOWN_BYTES`] (for summaries).
#[derive(Clone, Copy, Debug)]
pub struct Elided<'a>(pub &'a str);

impl Show for Elided<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let mut end = self.0.len().min(SHOWN_BYTES);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        out.text(self.0.get(..end).unwrap_or(""));
        if end < self.0.len() {
            out.text("…");
        }
    }
}

display_via_show!(Quoted<'_>, Elided<'_>);

/// `text` split at every `separator` byte (an ASCII byte, so every piece is a `str`); like
/// `str::split`, without its searcher's panic paths.
pub fn split(text: &str, separator: u8) -> impl Iterator<Item = &str> + Clone {
    let mut rest = Some(text);
    core::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|byte| byte == separator) {
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

/// `text` split at the first `separator` byte.
pub fn split_once(text: &str, separator: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|byte| byte == separator)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
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
pub fn base_name(path: &str) -> &str {
    match path.bytes().rposition(|byte| byte == b'/') {
        Some(at) => path.get(at + 1..).unwrap_or(""),
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
        assert_eq!(format!("{}", Elided("ab")), "ab");
        assert!(format!("{}", Elided(&"é".repeat(100))).ends_with('…'));
    }
}
