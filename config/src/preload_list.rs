//! The LD_PRELOAD list: entries separated by colons or spaces, as ld.so reads it.

use crate::text::base_name;

/// Whether `entry` names the library at `library` (same path, or same file name).
fn names_library(entry: &str, library: &str) -> bool {
    entry == library || base_name(entry) == base_name(library)
}

/// The entries of the list, in order.
pub fn entries(list: &str) -> impl Iterator<Item = &str> {
    crate::text::split(list, b':')
        .flat_map(|part| crate::text::split(part, b' '))
        .filter(|entry| !entry.is_empty())
}

/// The list without `library`, the other entries kept in order and joined by colons, written
/// into `out`; `None` when `out` is too small. An empty result means nothing is left.
pub fn without<'o>(list: &str, library: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let mut length = 0;
    for entry in entries(list).filter(|entry| !names_library(entry, library)) {
        let separator: &[u8] = if length == 0 { b"" } else { b":" };
        for part in [separator, entry.as_bytes()] {
            length = crate::text::put(out, length, part)?;
        }
    }
    core::str::from_utf8(out.get(..length)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so";

    fn without_owned(list: &str) -> std::string::String {
        let mut out = [0u8; 256];
        without(list, OURS, &mut out).unwrap().into()
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
        assert_eq!(without("/a/liba.so", OURS, &mut out), None);
    }
}
