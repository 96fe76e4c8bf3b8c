//! The shared object exports only the interposed symbols.

mod common;

use std::process::Command;

use common::*;

#[test]
fn only_the_hooked_symbols_are_exported() {
    let nm = tool("nm", "binutils");
    let output = Command::new(nm)
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("run nm");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut symbols: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    symbols.sort_unstable();
    assert_eq!(
        symbols,
        [
            "accept",
            "accept4",
            "connect",
            "listen",
            "setsockopt",
            "socket"
        ],
        "nm -D --defined-only {}:\n{text}",
        library().display()
    );
}
