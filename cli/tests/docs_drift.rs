//! The generated documentation is what the table of variables renders today: the regions of
//! `man/keepalive-preload.8` and `docs/configuration.md` between their `generated:` markers equal the
//! output of `keepalive-preload generate`, which renders `keepalive_config::VARIABLES`. On a
//! difference the test prints a diff and the command that regenerates the file. No root.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{BIN, capture, code, command, stderr, stdout};

/// Fails when FILE differs from `keepalive-preload generate WHAT` with FILE on standard input.
fn assert_generated(what: &str, file: &str) {
    let path = testkit::workspace_root().join(file);
    let current = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let output = capture(
        command()
            .args(["generate", what])
            .stdin(File::open(&path).expect("open the file"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert_eq!(
        code(&output),
        0,
        "{BIN} generate {what} < {file} failed: {}",
        stderr(&output)
    );
    let generated = stdout(&output);
    if generated != current {
        panic!(
            "{file} differs from what config/src/variables.rs renders (- {file}, + generated):\n\
             {}\nRegenerate it, from the repository's root, with:\n    \
             cargo run -q -p keepalive-preload-cli -- generate {what} --in-place {file}\n",
            diff(&current, &generated)
        );
    }
}

#[test]
fn man_page_environment_and_run_options_are_generated_from_the_table() {
    assert_generated("man", "man/keepalive-preload.8");
}

#[test]
fn the_configuration_table_is_generated_from_the_table() {
    assert_generated("config-table", "docs/configuration.md");
}

/// `keepalive-preload generate WHAT --in-place PATH`.
fn generate_in_place(what: &str, path: &Path) -> Output {
    capture(
        command()
            .args(["generate", what, "--in-place"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

#[test]
fn generate_refuses_a_file_without_the_markers() {
    let scratch = common::TempDir::new("docs-drift");
    let path = scratch.path("page.8");
    std::fs::write(&path, ".TH X 8\n").unwrap();
    let output = generate_in_place("man", &path);
    assert_eq!(code(&output), 2, "{output:?}");
    assert!(
        stderr(&output).contains("generated: environment"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), ".TH X 8\n");
}

#[test]
fn generate_in_place_rewrites_only_the_regions() {
    let scratch = common::TempDir::new("docs-drift");
    let path = scratch.path("README.md");
    std::fs::write(
        &path,
        "# x\n<!-- generated: configuration table: -->\nstale\n<!-- end generated: configuration table -->\ntail\n",
    )
    .unwrap();
    let output = generate_in_place("config-table", &path);
    assert_eq!(code(&output), 0, "{output:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# x\n<!-- generated: configuration table: do not edit;"));
    assert!(text.ends_with("<!-- end generated: configuration table -->\ntail\n"));
    assert!(!text.contains("stale"));
    for name in common::VARIABLE_NAMES {
        assert!(text.contains(&format!("| `{name}` |")), "{name} missing");
    }
}

/// A line diff of OLD and NEW (longest common subsequence), as hunks with two lines of context.
fn diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    // common[i][j]: length of the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    // Each line: (' ' | '-' | '+', line number in OLD or NEW, text).
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push((' ', i + 1, old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', i + 1, old[i]));
            i += 1;
        } else {
            lines.push(('+', j + 1, new[j]));
            j += 1;
        }
    }
    // Show the changed lines and two lines of context around each, a header before each run.
    let shown: Vec<bool> = (0..lines.len())
        .map(|k| {
            let around = k.saturating_sub(2)..(k + 3).min(lines.len());
            lines[around].iter().any(|line| line.0 != ' ')
        })
        .collect();
    let mut out = String::new();
    for (k, &(kind, number, text)) in lines.iter().enumerate() {
        if shown[k] {
            if k == 0 || !shown[k - 1] {
                out.push_str(&format!("@@ line {number} @@\n"));
            }
            out.push_str(&format!("{kind}{text}\n"));
        }
    }
    out
}
