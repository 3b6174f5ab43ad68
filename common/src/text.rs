//! Shaping messages for a terminal: every error the tools print is one line.

/// Collapses a possibly multi-line message (e.g. from PostgreSQL) into one line, with single spaces.
///
/// ```
/// assert_eq!(dbops_common::text::one_line("a\n  b\tc "), "a b c");
/// ```
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
