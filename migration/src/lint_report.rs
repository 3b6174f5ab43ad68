//! How `lint` shows its report: text for people, one finding to a block, or JSON for tools
//! (`--format json`). Warnings go to stderr in text; in JSON they are part of the document.

use std::fmt::{self, Write as _};

use anyhow::{Context as _, Result};
use dbops_common::text::one_line;
use serde_json::{Value, json};

use crate::lint::{Finding, Report};
use crate::lint_directive::MARKER;

/// A statement longer than this is cut in text output (JSON always has all of it).
const SHOWN_STATEMENT_CHARS: usize = 240;

/// `lint --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Format {
    /// Prints `report`; `all` says whether every migration was linted or only pending ones.
    pub fn print(self, report: &Report, all: bool) -> Result<()> {
        match self {
            Format::Text => {
                for warning in &report.warnings {
                    eprintln!("warning: {warning}");
                }
                print!("{}", TextReport { report, all });
            }
            Format::Json => {
                let text = serde_json::to_string_pretty(&json_report(report, all))
                    .context("cannot write the lint report as JSON")?;
                println!("{text}");
            }
        }
        Ok(())
    }
}

/// The report as JSON: `linted`, `skipped`, `findings` (each with `allowed` and `reason`),
/// `warnings` and `failed`, which is true exactly when the lint exits 1.
pub fn json_report(report: &Report, all: bool) -> Value {
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            json!({
                "migration": finding.migration,
                "rule": finding.rule,
                "statement": finding.statement,
                "message": finding.message,
                "why": finding.why,
                "instead": finding.instead,
                "allowed": finding.allowed.is_some(),
                "reason": finding.allowed,
            })
        })
        .collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|(migration, why)| json!({ "migration": migration, "why": why }))
        .collect();
    json!({
        "scope": if all { "all" } else { "pending" },
        "linted": report.linted,
        "skipped": skipped,
        "findings": findings,
        "warnings": report.warnings,
        "failed": report.failures().next().is_some(),
    })
}

struct TextReport<'a> {
    report: &'a Report,
    all: bool,
}

impl fmt::Display for TextReport<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.report;
        if report.linted.is_empty() && report.skipped.is_empty() {
            let what = if self.all {
                "no migrations"
            } else {
                "no pending migration"
            };
            return writeln!(formatter, "lint: nothing to lint ({what})");
        }
        for finding in report.failures() {
            write_finding(formatter, finding)?;
        }
        for finding in &report.findings {
            if let Some(reason) = &finding.allowed {
                writeln!(
                    formatter,
                    "allowed {}: {} (reason: {reason})",
                    finding.migration, finding.rule
                )?;
            }
        }
        for (migration, why) in &report.skipped {
            writeln!(formatter, "skipped {migration}: {why}")?;
        }
        let failures = report.failures().count();
        writeln!(
            formatter,
            "lint: {} migration(s) linted, {failures} finding(s), {} allowed",
            report.linted.len(),
            report.findings.len() - failures
        )
    }
}

fn write_finding(formatter: &mut fmt::Formatter<'_>, finding: &Finding) -> fmt::Result {
    writeln!(formatter, "{}: {}", finding.migration, finding.rule)?;
    writeln!(
        formatter,
        "  statement: {}",
        shown_statement(&finding.statement)
    )?;
    writeln!(formatter, "  problem:   {}", one_line(&finding.message))?;
    writeln!(formatter, "  why:       {}", finding.why)?;
    writeln!(formatter, "  instead:   {}", finding.instead)?;
    writeln!(
        formatter,
        "  or allow:  // {MARKER} allow({}) reason: <why it is safe here>, in {}.rs",
        finding.rule, finding.migration
    )?;
    writeln!(formatter)
}

/// The statement on one line, cut after [`SHOWN_STATEMENT_CHARS`] characters.
fn shown_statement(statement: &str) -> String {
    let line = one_line(statement);
    if line.chars().count() <= SHOWN_STATEMENT_CHARS {
        return line;
    }
    let mut shown: String = line.chars().take(SHOWN_STATEMENT_CHARS).collect();
    write!(shown, " …").expect("writing to a String cannot fail");
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, allowed: Option<&str>) -> Finding {
        Finding {
            migration: "m1".to_owned(),
            statement: "CREATE INDEX i\n  ON t (c)".to_owned(),
            rule: rule.to_owned(),
            message: "squawk says so".to_owned(),
            why: "it blocks",
            instead: "do it concurrently",
            allowed: allowed.map(str::to_owned),
        }
    }

    fn report() -> Report {
        Report {
            linted: vec!["m1".to_owned()],
            skipped: vec![("m2".to_owned(), "outside a transaction".to_owned())],
            findings: vec![
                finding("require-concurrent-index-creation", None),
                finding("require-lock-timeout", Some("a new table")),
            ],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn text_shows_each_finding_then_what_is_allowed_and_skipped() {
        let text = TextReport {
            report: &report(),
            all: false,
        }
        .to_string();
        assert_eq!(
            text,
            "m1: require-concurrent-index-creation\n  statement: CREATE INDEX i ON t (c)\n  problem:   squawk says so\n  why:       it blocks\n  instead:   do it concurrently\n  or allow:  // db-lint: allow(require-concurrent-index-creation) reason: <why it is safe here>, in m1.rs\n\n\
             allowed m1: require-lock-timeout (reason: a new table)\n\
             skipped m2: outside a transaction\n\
             lint: 1 migration(s) linted, 1 finding(s), 1 allowed\n"
        );
    }

    #[test]
    fn json_marks_allowed_findings_and_whether_the_lint_failed() {
        let value = json_report(&report(), true);
        assert_eq!(value["scope"], "all");
        assert_eq!(value["failed"], true);
        assert_eq!(value["findings"][0]["allowed"], false);
        assert_eq!(value["findings"][0]["reason"], Value::Null);
        assert_eq!(
            value["findings"][0]["statement"],
            "CREATE INDEX i\n  ON t (c)"
        );
        assert_eq!(value["findings"][1]["allowed"], true);
        assert_eq!(value["findings"][1]["reason"], "a new table");
        assert_eq!(value["skipped"][0]["migration"], "m2");
        let mut clean = report();
        clean.findings.remove(0);
        assert_eq!(json_report(&clean, true)["failed"], false);
    }

    #[test]
    fn long_statements_are_cut_in_text() {
        let long = "x".repeat(SHOWN_STATEMENT_CHARS + 10);
        let shown = shown_statement(&long);
        assert_eq!(shown.chars().count(), SHOWN_STATEMENT_CHARS + 2);
        assert!(shown.ends_with(" …"));
    }
}
