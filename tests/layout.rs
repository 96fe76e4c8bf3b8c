//! The shared object is laid out as build.rs and .cargo/config.toml ask: the code on file
//! pages of its own (`-z separate-code`: no page mapped both readable and executable, one page
//! less resident in every process), and frame pointers in the hooks (smaller unwind tables;
//! profilers walk through them). A build made with RUSTFLAGS set, or from outside the
//! repository, loses the frame pointers: this says so instead of shipping it quietly.

mod common;

use std::process::Command;

use common::*;

fn run(tool_name: &str, package: &str, args: &[&str]) -> String {
    let output = Command::new(tool(tool_name, package))
        .args(args)
        .arg(library())
        .output()
        .unwrap_or_else(|error| panic!("run {tool_name}: {error}"));
    assert!(output.status.success(), "{tool_name}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn hex(field: &str) -> u64 {
    u64::from_str_radix(field.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not a hexadecimal number: {field}"))
}

#[test]
fn the_code_has_file_pages_of_its_own() {
    let headers = run("readelf", "binutils", &["-lW"]);
    // LOAD  offset vaddr paddr filesz memsz flags... align
    let loads: Vec<(u64, u64, bool)> = headers
        .lines()
        .filter(|line| line.trim_start().starts_with("LOAD"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The flags column: `R`, `R E`, `RW`.
            let executable = fields.contains(&"E");
            (hex(fields[1]), hex(fields[4]), executable)
        })
        .collect();
    let code: Vec<_> = loads.iter().filter(|load| load.2).collect();
    assert_eq!(code.len(), 1, "one executable segment\n{headers}");
    let (offset, size, _) = *code[0];
    assert_eq!(offset % 4096, 0, "the code starts a file page\n{headers}");
    let end = (offset + size).div_ceil(4096) * 4096;
    for &(other_offset, other_size, executable) in &loads {
        if executable {
            continue;
        }
        let overlaps = other_offset < end && offset < other_offset + other_size;
        assert!(
            !overlaps,
            "a readable segment shares the code's file pages\n{headers}"
        );
    }
}

#[test]
fn the_hooks_keep_a_frame_pointer() {
    let code = run(
        "objdump",
        "binutils",
        &["-d", "--no-show-raw-insn", "--disassemble=socket"],
    );
    let instructions: Vec<&str> = code
        .lines()
        .filter(|line| line.contains(":\t"))
        .filter_map(|line| line.split(":\t").nth(1))
        .map(str::trim)
        .take(2)
        .collect();
    assert_eq!(
        instructions,
        ["push   %rbp", "mov    %rsp,%rbp"],
        "socket() does not set up a frame pointer: was the library built with RUSTFLAGS set, or \
         from outside the repository (so without .cargo/config.toml)?\n{code}"
    );
}
