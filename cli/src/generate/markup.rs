//! The markup of the table's text (`keepalive_config::variables`): literals, names, paragraphs.

/// A piece of a line in the table's markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Span<'a> {
    Plain(&'a str),
    /// `` `text` ``: typed or read as it is.
    Literal(&'a str),
    /// `{text}`: a file, a sysctl, an identifier, a placeholder.
    Name(&'a str),
}

/// The spans of one line (a span left open runs to the end of the line).
pub(super) fn spans(line: &str) -> Vec<Span<'_>> {
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
pub(super) fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    text.split("\n\n")
        .filter(|paragraph| !paragraph.trim().is_empty())
        .map(|paragraph| paragraph.lines().collect())
        .collect()
}

/// Upper-case first letter and a final stop: a plain clause as a sentence.
pub(super) fn sentence(clause: &str) -> String {
    let mut chars = clause.chars();
    let mut text: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    text.push('.');
    text
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
}
