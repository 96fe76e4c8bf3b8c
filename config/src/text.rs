//! Text in diagnostics: a value as the user gave it, quoted, escaped and elided, so that an
//! error line always keeps its shape, `VAR="…"…; not applied`, whatever the value holds.

use core::fmt::{self, Write};

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

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..SHOWN_BYTES).unwrap_or(self.0);
        f.write_char('"')?;
        for chunk in shown.utf8_chunks() {
            for character in chunk.valid().chars() {
                match character {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                    c => f.write_char(c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        if shown.len() < self.0.len() {
            f.write_char('…')?;
        }
        f.write_char('"')
    }
}

/// A list as the user gave it, unquoted, elided after [`SHOWN_BYTES`] (for summaries).
#[derive(Clone, Copy, Debug)]
pub struct Elided<'a>(pub &'a str);

impl fmt::Display for Elided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(SHOWN_BYTES);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        f.write_str(self.0.get(..end).unwrap_or(""))?;
        if end < self.0.len() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

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
        let long = [b'x'; 10_000];
        let shown = format!("{}", Quoted(&long));
        assert_eq!(shown.len(), 1 + SHOWN_BYTES + '…'.len_utf8() + 1);
        assert!(shown.ends_with("x…\""));
        assert_eq!(format!("{}", Elided("ab")), "ab");
        assert!(format!("{}", Elided(&"é".repeat(100))).ends_with('…'));
    }
}
