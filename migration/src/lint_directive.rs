//! The lint's opt-out comments, `// db-lint: allow(<rule>) reason: <why>`: finding them in a
//! migration's source and reading one. Shared by `build.rs`, which collects them from every
//! migration file at compile time, and `lint.rs`, which checks and applies them.
//!
//! Only a line comment on a line of its own counts, so a string that happens to contain the
//! marker is never one. Comments are not part of a migration's checksum (`normalize.rs`), so
//! adding or editing a directive never marks an applied migration as edited.

/// What starts a directive, after `//` and any spaces.
pub const MARKER: &str = "db-lint:";

/// One opt-out as written: the rule it allows and why that is safe here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub rule: String,
    pub reason: String,
}

/// `(line number, the text after the marker)` of every directive comment in `source`.
pub fn directives_in(source: &str) -> Vec<(u32, String)> {
    source
        .lines()
        .zip(1u32..)
        .filter_map(|(line, number)| {
            let comment = line.trim_start().strip_prefix("//")?;
            let directive = comment
                .trim_start_matches(['/', '!'])
                .trim_start()
                .strip_prefix(MARKER)?;
            Some((number, directive.trim().to_owned()))
        })
        .collect()
}

/// Reads the text after the marker, `allow(<rule>) reason: <why>`. The error says what is wrong
/// and shows the form; whether the rule exists is for the caller, which knows the rules.
pub fn parse_directive(text: &str) -> Result<Directive, String> {
    const FORM: &str = "write `// db-lint: allow(<rule>) reason: <why it is safe here>`";
    let rest = text
        .trim()
        .strip_prefix("allow(")
        .ok_or_else(|| format!("`db-lint: {text}` is not an opt-out: {FORM}"))?;
    let (rule, rest) = rest
        .split_once(')')
        .ok_or_else(|| format!("`db-lint: {text}` has no closing `)` after the rule: {FORM}"))?;
    let rule = rule.trim();
    if rule.is_empty() || rule.contains([',', ' ']) {
        return Err(format!(
            "`db-lint: {text}` must name exactly one rule in allow(…): {FORM}, one comment per rule"
        ));
    }
    let reason = rest
        .trim()
        .strip_prefix("reason:")
        .map(str::trim)
        .unwrap_or_default();
    if reason.is_empty() {
        return Err(format!(
            "`db-lint: {text}` gives no reason: {FORM}, saying why the statement is safe here"
        ));
    }
    Ok(Directive {
        rule: rule.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_directives_on_lines_of_their_own_with_their_line_numbers() {
        let source = "fn up() {\n    // db-lint: allow(require-lock-timeout) reason: new table\n    let sql = \"// db-lint: allow(x) reason: in a string\";\n    /// db-lint: allow(y) reason: doc comment\n    // see db-lint: not at the start\n}\n";
        assert_eq!(
            directives_in(source),
            [
                (
                    2,
                    "allow(require-lock-timeout) reason: new table".to_owned()
                ),
                (4, "allow(y) reason: doc comment".to_owned()),
            ]
        );
    }

    #[test]
    fn reads_the_rule_and_the_reason() {
        assert_eq!(
            parse_directive(" allow( changing-column-type )  reason:  the table is empty "),
            Ok(Directive {
                rule: "changing-column-type".to_owned(),
                reason: "the table is empty".to_owned(),
            })
        );
    }

    #[test]
    fn a_directive_without_a_reason_is_refused_with_the_form() {
        for text in [
            "allow(changing-column-type)",
            "allow(changing-column-type) reason:",
            "allow(changing-column-type) reason:   ",
            "allow(changing-column-type) because it is fine",
        ] {
            let error = parse_directive(text).unwrap_err();
            assert!(error.contains("gives no reason"), "{text}: {error}");
            assert!(error.contains("reason: <why"), "{text}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn malformed_directives_are_refused() {
        for (text, expected) in [
            ("ignore(x) reason: y", "is not an opt-out"),
            ("allow(x reason: y", "no closing `)`"),
            ("allow() reason: y", "exactly one rule"),
            ("allow(a, b) reason: y", "exactly one rule"),
        ] {
            let error = parse_directive(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
