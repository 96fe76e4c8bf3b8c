//! The man page's regions in roff: the ENVIRONMENT entries and the `run` options.

use keepalive_config::variables::Choice;
use keepalive_config::{KEEPALIVE_STRICT, VARIABLES, Variable};

use super::markup::{Span, paragraphs, sentence, spans};
use crate::options::{AllVariables, VariableSet};

/// Plain text as roff: backslashes and dashes escaped, characters beyond ASCII by code point.
pub(super) fn roff_escape(text: &str) -> String {
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
pub(super) fn man_environment() -> String {
    VARIABLES.iter().map(man_variable).collect()
}

/// The `.TP` entries of `run`'s options that set variables.
pub(super) fn man_run_options() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes_dashes_backslashes_requests_and_non_ascii() {
        assert_eq!(
            roff_markup("`17000-17999` {a\\b} × 2, in 1..9"),
            "\\fB\\%17000\\-17999\\fR \\fI\\%a\\eb\\fR \\[u00D7] \\%2, in \\%1..9"
        );
        assert_eq!(roff_line(".x".to_owned()), "\\&.x\n");
        assert_eq!(roff_value_name("MS|auto"), "\\fIms\\fR|\\fBauto\\fR");
    }
}
