//! UTF-8 by hand, on bytes: `core::str::from_utf8` is some 500 bytes of code and a 256-byte
//! table in every process the library loads into, and values, names and paths stay bytes
//! anyway (there is no safe way from bytes to `str` but it, and no `unsafe` outside FFI).
//! Valid is what `from_utf8` accepts (RFC 3629: no overlong form, no surrogate, nothing past
//! U+10FFFF).

/// The sequence at the start of `bytes`: its length and whether it is a whole, valid
/// character. An invalid one is as long as the start of a valid sequence it has (at least one
/// byte), as `Utf8Error::error_len` counts it; at the end of `bytes`, the incomplete sequence
/// left there. `(0, false)` for no bytes.
pub fn sequence(bytes: &[u8]) -> (usize, bool) {
    let Some(&lead) = bytes.first() else {
        return (0, false);
    };
    // The sequence's length, and the range of its second byte (the others': 0x80..=0xbf).
    let (width, mut low, mut high) = match lead {
        0x00..=0x7f => return (1, true),
        0xc2..=0xdf => (2, 0x80, 0xbf),
        // No overlong three-byte form.
        0xe0 => (3, 0xa0, 0xbf),
        // No surrogate (U+D800..U+DFFF).
        0xed => (3, 0x80, 0x9f),
        0xe1..=0xef => (3, 0x80, 0xbf),
        // No overlong four-byte form.
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        // Nothing past U+10FFFF.
        0xf4 => (4, 0x80, 0x8f),
        // A continuation byte, an overlong two-byte lead (c0, c1), or past f4.
        _ => return (1, false),
    };
    let mut length = 1;
    while length < width {
        match bytes.get(length) {
            Some(&byte) if low <= byte && byte <= high => length += 1,
            _ => return (length, false),
        }
        (low, high) = (0x80, 0xbf);
    }
    (width, true)
}

/// Whether `bytes` are UTF-8 throughout (what `core::str::from_utf8` accepts).
pub fn is_utf8(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (length, valid) = sequence(rest);
        if !valid {
            return false;
        }
        rest = rest.get(length..).unwrap_or(&[]);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    /// `sequence` as `from_utf8`'s error has it.
    fn reference(bytes: &[u8]) -> (usize, bool) {
        match core::str::from_utf8(bytes) {
            Ok(text) => (
                text.chars().next().map_or(0, char::len_utf8),
                !text.is_empty(),
            ),
            Err(error) if error.valid_up_to() > 0 => {
                let valid = core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap();
                (valid.chars().next().unwrap().len_utf8(), true)
            }
            Err(error) => (error.error_len().unwrap_or(bytes.len()), false),
        }
    }

    /// Every sequence of up to four bytes from a set that covers each boundary of the
    /// ranges (and ASCII after or in place of a continuation).
    pub(crate) fn samples() -> Vec<Vec<u8>> {
        let interesting = [
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
            0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff,
        ];
        let mut all: Vec<Vec<u8>> = std::vec![Vec::new()];
        let mut previous: Vec<Vec<u8>> = std::vec![Vec::new()];
        for _ in 0..4 {
            let next: Vec<Vec<u8>> = previous
                .iter()
                .flat_map(|start| {
                    interesting.iter().map(move |&byte| {
                        let mut longer = start.clone();
                        longer.push(byte);
                        longer
                    })
                })
                .collect();
            all.extend(next.iter().cloned());
            previous = next;
        }
        all
    }

    #[test]
    fn sequences_are_what_from_utf8_finds() {
        for bytes in samples() {
            assert_eq!(sequence(&bytes), reference(&bytes), "{bytes:02x?}");
            assert_eq!(
                is_utf8(&bytes),
                core::str::from_utf8(&bytes).is_ok(),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn every_scalar_value_is_valid_and_nothing_else_of_its_length() {
        for character in (0..=0x10ffff).filter_map(char::from_u32) {
            let mut buffer = [0; 4];
            let bytes = character.encode_utf8(&mut buffer).as_bytes();
            assert_eq!(sequence(bytes), (bytes.len(), true), "{character:?}");
        }
        for bad in [
            &[0xe0, 0x80, 0x80][..],
            &[0xed, 0xa0, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xf0, 0x80, 0x80, 0x80],
            &[0xc1, 0xbf],
            &[0xf8, 0x88, 0x80, 0x80, 0x80],
        ] {
            assert!(!is_utf8(bad), "{bad:02x?}");
            assert_eq!(sequence(bad), (1, false), "{bad:02x?}");
        }
    }
}
