//! `generate` (hidden): the documentation that comes from the one table of variables
//! (`keepalive_config::VARIABLES`), spliced into the regions between marker comments of a file:
//!
//! - `generate man`: the ENVIRONMENT entries and the `run` options of
//!   `man/keepalive-preload.8` (roff);
//! - `generate config-table`: the configuration table of `docs/configuration.md` (markdown).
//!
//! The file comes on standard input and goes to standard output, or is rewritten with
//! `--in-place FILE`. Everything outside the regions is kept byte for byte. The text of the
//! table is plain or in the small markup `keepalive_config::variables` defines.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use keepalive_config::variables::Choice;
use keepalive_config::{KEEPALIVE_STRICT, VARIABLES, Variable};

use crate::Failure;
use crate::options::{AllVariables, VariableSet};

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

// ---- the markup ------------------------------------------------------------------------------

/// A piece of a line in the table's markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span<'a> {
    Plain(&'a str),
    /// `` `text` ``: typed or read as it is.
    Literal(&'a str),
    /// `{text}`: a file, a sysctl, an identifier, a placeholder.
    Name(&'a str),
}

/// The spans of one line (a span left open runs to the end of the line).
fn spans(line: &str) -> Vec<Span<'_>> {
    let mut spans = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let Some(open) = rest.find(['`', '{']) else {
            spans.push(Span::Plain(rest));
            break;
        };
        if open > 0 {
            spans.push(Span::Plain(&rest[..open]));
        }
        let literal = rest[open..].starts_with('`');
        let inside = &rest[open + 1..];
        let end = inside
            .find(if literal { '`' } else { '}' })
            .unwrap_or(inside.len());
        spans.push(if literal {
            Span::Literal(&inside[..end])
        } else {
            Span::Name(&inside[..end])
        });
        rest = inside.get(end + 1..).unwrap_or("");
    }
    spans
}

/// Paragraphs, each a list of lines.
fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    text.split("\n\n")
        .filter(|paragraph| !paragraph.trim().is_empty())
        .map(|paragraph| paragraph.lines().collect())
        .collect()
}

/// Upper-case first letter and a final stop: a plain clause as a sentence.
fn sentence(clause: &str) -> String {
    let mut chars = clause.chars();
    let mut text: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    text.push('.');
    text
}

// ---- roff ------------------------------------------------------------------------------------

/// Plain text as roff: backslashes and dashes escaped, characters beyond ASCII by code point.
fn roff_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// Plain text as roff, with hyphenation off (`\%`) in words that are values or names rather
/// than prose: those with digits, dashes, slashes, underscores or a stop inside.
fn roff_plain(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let inside = word.trim_end_matches(['.', ',', ';', ':', ')']);
            if inside.contains(|c: char| c.is_ascii_digit() || "-/_=*[.".contains(c)) {
                format!("\\%{}", roff_escape(word))
            } else {
                roff_escape(word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One source line of roff text: a leading `.` or `'` would start a request.
fn roff_line(text: String) -> String {
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}\n")
    } else {
        format!("{text}\n")
    }
}

/// One line of markup as roff: literals bold, names italic.
fn roff_markup(line: &str) -> String {
    spans(line)
        .into_iter()
        .map(|span| match span {
            Span::Plain(text) => roff_plain(text),
            Span::Literal(text) => format!("\\fB\\%{}\\fR", roff_escape(text)),
            Span::Name(text) => format!("\\fI\\%{}\\fR", roff_escape(text)),
        })
        .collect()
}

/// A value placeholder: upper-case words as italic lower-case placeholders, the others bold.
fn roff_value_name(value_name: &str) -> String {
    value_name
        .split('|')
        .map(|word| {
            if word.chars().any(|c| c.is_ascii_lowercase()) {
                format!("\\fB{}\\fR", roff_escape(word))
            } else {
                format!("\\fI{}\\fR", roff_escape(&word.to_ascii_lowercase()))
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn roff_choices(out: &mut String, choices: &[Choice]) {
    out.push_str(".RS\n");
    for (index, choice) in choices.iter().enumerate() {
        let stop = if index + 1 == choices.len() { "." } else { ";" };
        out.push_str(".TP\n");
        out.push_str(&format!(".B {}\n", roff_escape(choice.value)));
        out.push_str(&roff_line(format!("{}{stop}", roff_markup(choice.meaning))));
    }
    out.push_str(".RE\n");
}

/// One ENVIRONMENT entry: the meaning and the first paragraph of the details, the choices, the
/// other paragraphs, then what is accepted and what applies when unset.
fn man_variable(variable: &Variable) -> String {
    let mut out = String::new();
    out.push_str(".TP\n");
    out.push_str(&format!(".B {}\n", roff_escape(variable.name)));
    out.push_str(&roff_line(roff_plain(&sentence(variable.meaning))));
    let paragraphs = paragraphs(variable.details);
    let mut rest = paragraphs.iter();
    if let Some(first) = rest.next() {
        for line in first {
            out.push_str(&roff_line(roff_markup(line)));
        }
    }
    if !variable.choices.is_empty() {
        roff_choices(&mut out, variable.choices);
    }
    for paragraph in rest {
        out.push_str(".IP\n");
        for line in paragraph {
            out.push_str(&roff_line(roff_markup(line)));
        }
    }
    out.push_str(".IP\n");
    out.push_str(&roff_line(format!(
        "Accepts {}.",
        roff_plain(variable.accepted)
    )));
    out.push_str(&roff_line(format!(
        "\\%Unset: {}.",
        roff_plain(variable.unset)
    )));
    out
}

/// The `.TP` entries of ENVIRONMENT, one per variable.
fn man_environment() -> String {
    VARIABLES.iter().map(man_variable).collect()
}

/// The `.TP` entries of `run`'s options that set variables.
fn man_run_options() -> String {
    let mut out = String::new();
    for variable in AllVariables::VARIABLES {
        let flag = format!("\\fB\\-\\-{}\\fR", roff_escape(variable.flag));
        out.push_str(".TP\n");
        if variable.name == KEEPALIVE_STRICT.name {
            out.push_str(&format!("{flag}\n"));
            out.push_str(&format!(
                "Sets \\fB{}=yes\\fR.\n",
                roff_escape(variable.name)
            ));
        } else {
            out.push_str(&format!(
                "{flag} {}\n",
                roff_value_name(variable.value_name)
            ));
            out.push_str(&format!("Sets \\fB{}\\fR.\n", roff_escape(variable.name)));
        }
    }
    out
}

// ---- markdown --------------------------------------------------------------------------------

/// Plain text in a markdown table cell. `_` stays (only inside words in the table, where it
/// is no emphasis), and so do brackets (the table's text has no `](`: no link).
fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Code in a markdown table cell (`|` still splits cells there unless escaped).
fn markdown_code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

/// One line of markup as markdown: literals and names both as code.
fn markdown_markup(line: &str) -> String {
    spans(line)
        .into_iter()
        .map(|span| match span {
            Span::Plain(text) => markdown_escape(text),
            Span::Literal(text) | Span::Name(text) => markdown_code(text),
        })
        .collect()
}

/// The meaning cell: the meaning, the first paragraph of the details, the choices, the rest.
fn markdown_meaning(variable: &Variable) -> String {
    let mut sentences = vec![format!("{}.", markdown_escape(variable.meaning))];
    let paragraphs = paragraphs(variable.details);
    let mut rest = paragraphs.iter();
    if let Some(first) = rest.next() {
        sentences.extend(first.iter().map(|line| markdown_markup(line)));
    }
    if !variable.choices.is_empty() {
        let choices: Vec<String> = variable
            .choices
            .iter()
            .map(|choice| {
                format!(
                    "{}: {}",
                    markdown_code(choice.value),
                    markdown_markup(choice.meaning)
                )
            })
            .collect();
        sentences.push(format!("{}.", choices.join("; ")));
    }
    for paragraph in rest {
        sentences.extend(paragraph.iter().map(|line| markdown_markup(line)));
    }
    sentences.join(" ")
}

fn config_table() -> String {
    let mut out = String::from(
        "\n| variable | option | meaning | accepted | unset |\n|---|---|---|---|---|\n",
    );
    for variable in VARIABLES {
        let option = if variable.name == KEEPALIVE_STRICT.name {
            format!("--{}", variable.flag)
        } else {
            format!("--{} {}", variable.flag, variable.value_name)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            markdown_code(variable.name),
            markdown_code(&option),
            markdown_meaning(&variable),
            markdown_escape(variable.accepted),
            markdown_escape(variable.unset),
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_split_literals_and_names() {
        assert_eq!(
            spans("a `b-c` and {d} e"),
            [
                Span::Plain("a "),
                Span::Literal("b-c"),
                Span::Plain(" and "),
                Span::Name("d"),
                Span::Plain(" e"),
            ]
        );
        assert_eq!(
            spans("open `end"),
            [Span::Plain("open "), Span::Literal("end")]
        );
    }

    #[test]
    fn roff_escapes_dashes_backslashes_requests_and_non_ascii() {
        assert_eq!(
            roff_markup("`17000-17999` {a\\b} × 2, in 1..9"),
            "\\fB\\%17000\\-17999\\fR \\fI\\%a\\eb\\fR \\[u00D7] \\%2, in \\%1..9"
        );
        assert_eq!(roff_line(".x".to_owned()), "\\&.x\n");
        assert_eq!(roff_value_name("MS|auto"), "\\fIms\\fR|\\fBauto\\fR");
    }

    #[test]
    fn markdown_escapes_what_a_table_cell_would_read() {
        assert_eq!(
            markdown_escape("argv[0] a|b *x_y* <&"),
            "argv[0] a\\|b \\*x_y\\* &lt;&amp;"
        );
        assert_eq!(markdown_code("on|off"), "`on\\|off`");
    }

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
