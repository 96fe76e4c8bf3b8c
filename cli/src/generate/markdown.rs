//! The configuration table of docs/configuration.md in markdown.

use keepalive_config::{KEEPALIVE_STRICT, VARIABLES, Variable};

use super::markup::{Span, paragraphs, spans};

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

pub(super) fn config_table() -> String {
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
    fn markdown_escapes_what_a_table_cell_would_read() {
        assert_eq!(
            markdown_escape("argv[0] a|b *x_y* <&"),
            "argv[0] a\\|b \\*x_y\\* &lt;&amp;"
        );
        assert_eq!(markdown_code("on|off"), "`on\\|off`");
    }
}
