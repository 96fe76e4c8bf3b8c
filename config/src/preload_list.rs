//! The LD_PRELOAD list: entries separated by colons or spaces, as ld.so reads it.

use crate::text::base_name;

/// Whether `entry` names the library at `library` (same path, or same file name).
fn names_library(entry: &[u8], library: &[u8]) -> bool {
    entry == library || base_name(entry) == base_name(library)
}

/// The entries of the list, in order.
pub fn entries(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::text::split(list, b':')
        .flat_map(|part| crate::text::split(part, b' '))
        .filter(|entry| !entry.is_empty())
}

/// The list without `library`, the other entries kept in order and joined by colons, written
/// into `out`; `None` when `out` is too small. An empty result means nothing is left. Bytes,
/// as ld.so reads them: UTF-8 in, UTF-8 out.
pub fn without<'o>(list: &[u8], library: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let mut length = 0;
    for entry in entries(list).filter(|entry| !names_library(entry, library)) {
        let separator: &[u8] = if length == 0 { b"" } else { b":" };
        for part in [separator, entry] {
            length = crate::text::put(out, length, part)?;
        }
    }
    out.get(..length)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so";

    fn without_owned(list: &str) -> std::string::String {
        let mut out = [0u8; 256];
        let rest = without(list.as_bytes(), OURS.as_bytes(), &mut out).unwrap();
        std::string::String::from_utf8(rest.to_vec()).unwrap()
    }

    #[test]
    fn removes_only_this_library_and_keeps_order() {
        assert_eq!(
            without_owned(&std::format!("/a/liba.so:{OURS} /b/libb.so")),
            "/a/liba.so:/b/libb.so"
        );
        assert_eq!(without_owned("libkeepalive_preload.so"), "");
        assert_eq!(without_owned(OURS), "");
        assert_eq!(without_owned("/x/libkeepalive.so"), "/x/libkeepalive.so");
    }

    #[test]
    fn too_small_a_buffer_is_none() {
        let mut out = [0u8; 4];
        assert_eq!(without(b"/a/liba.so", OURS.as_bytes(), &mut out), None);
    }
}
