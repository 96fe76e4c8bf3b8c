//! `generate` (hidden): the documentation that comes from the one table of variables
//! (`keepalive_config::VARIABLES`), spliced into the regions between marker comments of a file:
//!
//! - `generate man`: the ENVIRONMENT entries and the `run` options of
//!   `man/keepalive-preload.8` (roff);
//! - `generate config-table`: the configuration table of `docs/configuration.md` (markdown).
//!
//! The file comes on standard input and goes to standard output, or is rewritten with
//! `--in-place FILE`. Everything outside the regions is kept byte for byte. The text of the
//! table is plain or in the small markup `keepalive_config::variables` defines (`markup`),
//! rendered as roff (`roff`) and markdown (`markdown`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod markdown;
mod markup;
mod roff;

use clap::{Args, ValueEnum};

use crate::Failure;
use markdown::config_table;
use roff::{man_environment, man_run_options};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What to generate.
    #[arg(value_enum)]
    what: What,
    /// Rewrite FILE instead of reading standard input and writing standard output.
    #[arg(long, value_name = "FILE")]
    in_place: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    /// The ENVIRONMENT entries and `run` options of man/keepalive-preload.8.
    Man,
    /// The configuration table of docs/configuration.md.
    ConfigTable,
}

/// One generated region: its name in the markers and what fills it.
struct Region {
    name: &'static str,
    render: fn() -> String,
}

impl What {
    fn regions(self) -> &'static [Region] {
        match self {
            What::Man => &[
                Region {
                    name: "environment",
                    render: man_environment,
                },
                Region {
                    name: "run options",
                    render: man_run_options,
                },
            ],
            What::ConfigTable => &[Region {
                name: "configuration table",
                render: config_table,
            }],
        }
    }

    fn command(self) -> &'static str {
        match self {
            What::Man => "man",
            What::ConfigTable => "config-table",
        }
    }

    /// The first line of a region (everything after the name is rewritten) and its last.
    fn markers(self, region: &str) -> (String, String) {
        let command = self.command();
        match self {
            What::Man => (
                format!(
                    ".\\\" generated: {region}: do not edit; keepalive-preload generate {command}"
                ),
                format!(".\\\" end generated: {region}"),
            ),
            What::ConfigTable => (
                format!(
                    "<!-- generated: {region}: do not edit; keepalive-preload generate {command} -->"
                ),
                format!("<!-- end generated: {region} -->"),
            ),
        }
    }

    fn start_prefix(self, region: &str) -> String {
        match self {
            What::Man => format!(".\\\" generated: {region}:"),
            What::ConfigTable => format!("<!-- generated: {region}:"),
        }
    }
}

pub fn generate(args: &GenerateArgs) -> Result<ExitCode, Failure> {
    let (input, source) = match &args.in_place {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|error| Failure::new(format!("generate: {}: {error}", path.display())))?,
            path.display().to_string(),
        ),
        None => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|error| Failure::new(format!("generate: standard input: {error}")))?;
            (input, "standard input".to_owned())
        }
    };
    let output = splice(args.what, &input)
        .map_err(|message| Failure::new(format!("generate: {source}: {message}")))?;
    match &args.in_place {
        Some(path) if output != input => std::fs::write(path, output)
            .map_err(|error| Failure::new(format!("generate: {}: {error}", path.display())))?,
        Some(_) => {}
        None => std::io::stdout()
            .write_all(output.as_bytes())
            .map_err(|error| Failure::new(format!("generate: standard output: {error}")))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `text` with every region of `what` filled anew.
fn splice(what: What, text: &str) -> Result<String, String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    for region in what.regions() {
        let (start, end) = what.markers(region.name);
        let prefix = what.start_prefix(region.name);
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&index| lines[index].starts_with(&prefix))
            .collect();
        let first = match starts[..] {
            [first] => first,
            [] => {
                return Err(format!(
                    "no line starting {prefix:?} (the region's first line)"
                ));
            }
            _ => return Err(format!("more than one line starting {prefix:?}")),
        };
        let last = (first + 1..lines.len())
            .find(|&index| lines[index].trim_end() == end)
            .ok_or_else(|| format!("no line {end:?} after {prefix:?}"))?;
        let body = (region.render)();
        let replacement = [format!("{start}\n")]
            .into_iter()
            .chain(body.split_inclusive('\n').map(str::to_owned));
        lines.splice(first..last, replacement);
    }
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::VARIABLES;
    use roff::roff_escape;

    #[test]
    fn splice_replaces_only_the_regions() {
        let page = "a\n.\\\" generated: environment: old\nstale\n.\\\" end generated: environment\nb\n\
                    .\\\" generated: run options:\n.\\\" end generated: run options\nc\n";
        let out = splice(What::Man, page).unwrap();
        assert!(out.starts_with("a\n.\\\" generated: environment: do not edit"));
        assert!(!out.contains("stale"));
        assert!(out.contains(".B KEEPALIVE_INHERIT\n"));
        assert!(out.contains("\\fB\\-\\-strict\\fR\n"));
        assert!(out.ends_with(".\\\" end generated: run options\nc\n"));
        assert_eq!(splice(What::Man, &out).unwrap(), out);
        assert!(splice(What::Man, "a\n").is_err());
        assert!(
            splice(
                What::ConfigTable,
                "<!-- generated: configuration table: x -->\n"
            )
            .is_err()
        );
    }

    #[test]
    fn every_variable_is_in_each_rendering() {
        let table = config_table();
        let environment = man_environment();
        for variable in VARIABLES {
            assert!(table.contains(&format!("| `{}` |", variable.name)));
            assert!(environment.contains(&format!(".B {}\n", roff_escape(variable.name))));
        }
        assert_eq!(
            table.lines().filter(|line| line.starts_with("| `")).count(),
            VARIABLES.len()
        );
    }
}
