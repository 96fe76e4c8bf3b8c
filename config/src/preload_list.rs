//! The LD_PRELOAD list: entries separated by colons or spaces, as ld.so reads it.

/// Whether `entry` names the library at `library` (same path, or same file name).
fn names_library(entry: &str, library: &str) -> bool {
    let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
    entry == library || base(entry) == base(library)
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split([':', ' ']).filter(|entry| !entry.is_empty())
}

/// The list without `library`, other entries kept in order; `None` when nothing is left.
pub fn without(list: &str, library: &str) -> Option<String> {
    let kept: Vec<&str> = entries(list)
        .filter(|entry| !names_library(entry, library))
        .collect();
    (!kept.is_empty()).then(|| kept.join(":"))
}

/// `library` first, then the other entries of `list` in order (without a second copy of it).
pub fn with_first(list: Option<&str>, library: &str) -> String {
    match list.and_then(|list| without(list, library)) {
        Some(rest) => format!("{library}:{rest}"),
        None => library.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so";

    #[test]
    fn removes_only_this_library_and_keeps_order() {
        assert_eq!(
            without(&format!("/a/liba.so:{OURS} /b/libb.so"), OURS).as_deref(),
            Some("/a/liba.so:/b/libb.so")
        );
        assert_eq!(without("libkeepalive_preload.so", OURS), None);
        assert_eq!(without(OURS, OURS), None);
        assert_eq!(
            without("/x/libkeepalive.so", OURS).as_deref(),
            Some("/x/libkeepalive.so")
        );
    }

    #[test]
    fn prepends_once() {
        assert_eq!(with_first(None, OURS), OURS);
        assert_eq!(
            with_first(Some(&format!("/a/liba.so:{OURS}")), OURS),
            format!("{OURS}:/a/liba.so")
        );
    }
}
