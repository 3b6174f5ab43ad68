//! `lint`: squawk's migration-safety rules over the SQL each migration really runs.
//!
//! SeaORM migrations are Rust, so a SQL linter never sees them. The dry run (`dry_run.rs`) runs
//! them in a transaction that is rolled back and captures every statement; each migration's
//! statements are then one file for `squawk_linter`, linted as it lints a migration file run in
//! one transaction, so a statement on a table created earlier in the same migration is treated
//! as squawk treats it (several rules skip such tables). Findings can be allowed per migration
//! with `// db-lint: allow(<rule>) reason: <why>` (`lint_directive.rs`, collected by build.rs).

use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context as _, Result, anyhow, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use squawk_linter::{Linter, LinterSettings, Rule, Version};
use squawk_syntax::SourceFile;

use crate::dry_run::{ExecutedMigration, execute_and_roll_back};
use crate::failure::database_failure;
use crate::lint_directive::{MARKER, parse_directive};
pub use crate::lint_report::Format;
use crate::states::{EditedRefusal, migration_states, pending, refuse_edited};

include!(concat!(env!("OUT_DIR"), "/lint_opt_outs.rs"));

/// A rule `db-lint` checks, with what the finding means for a live database and what to do.
pub struct CheckedRule {
    pub rule: Rule,
    pub why: &'static str,
    pub instead: &'static str,
}

/// The rules `db-lint` enables: the ones about locks held on tables that are in use, table
/// rewrites and scans, and a missing lock timeout. Style rules (types, naming) are left out.
pub const CHECKED_RULES: &[CheckedRule] = &[
    CheckedRule {
        rule: Rule::AddingRequiredField,
        why: "existing rows have no value for the new NOT NULL column: the statement fails on a table with rows, and code still running without the column cannot insert",
        instead: "add the column nullable (or with a constant DEFAULT), backfill it, then make it NOT NULL in a later migration",
    },
    CheckedRule {
        rule: Rule::AddingNotNullableField,
        why: "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, which blocks reads and writes until the scan ends",
        instead: "add CHECK (column IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL, which uses the validated check instead of a scan",
    },
    CheckedRule {
        rule: Rule::RequireConcurrentIndexCreation,
        why: "CREATE INDEX holds a SHARE lock for the whole build: every write to the table waits until the index is built",
        instead: "CREATE INDEX CONCURRENTLY IF NOT EXISTS, in a migration of its own whose use_transaction() returns Some(false)",
    },
    CheckedRule {
        rule: Rule::RequireConcurrentIndexDeletion,
        why: "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table, which blocks reads and writes while it waits and runs",
        instead: "DROP INDEX CONCURRENTLY IF EXISTS, in a migration of its own whose use_transaction() returns Some(false)",
    },
    CheckedRule {
        rule: Rule::ChangingColumnType,
        why: "most type changes rewrite the table and its indexes under an ACCESS EXCLUSIVE lock, and clients that read the old type may break",
        instead: "add a column of the new type, backfill it in batches, move the code over, then drop the old column in a later migration",
    },
    CheckedRule {
        rule: Rule::AddingForeignKeyConstraint,
        why: "validating a new foreign key scans the table while SHARE ROW EXCLUSIVE locks on both tables block their writes",
        instead: "add the foreign key NOT VALID in one migration, then ALTER TABLE … VALIDATE CONSTRAINT in a later one",
    },
    CheckedRule {
        rule: Rule::ConstraintMissingNotValid,
        why: "adding a constraint without NOT VALID checks every row while holding a lock that blocks writes (reads too for most constraints)",
        instead: "add the constraint NOT VALID in one migration, then ALTER TABLE … VALIDATE CONSTRAINT in a later one",
    },
    CheckedRule {
        rule: Rule::AddingFieldWithDefault,
        why: "a volatile DEFAULT or a generated column rewrites the whole table under an ACCESS EXCLUSIVE lock",
        instead: "add the column nullable without the default, backfill it in batches, then SET DEFAULT",
    },
    CheckedRule {
        rule: Rule::AddingSerialPrimaryKeyField,
        why: "adding a primary key builds its unique index under an ACCESS EXCLUSIVE lock, blocking reads and writes for the build",
        instead: "CREATE UNIQUE INDEX CONCURRENTLY in its own migration, then ADD PRIMARY KEY USING INDEX",
    },
    CheckedRule {
        rule: Rule::DisallowedUniqueConstraint,
        why: "adding a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock, blocking reads and writes for the build",
        instead: "CREATE UNIQUE INDEX CONCURRENTLY in its own migration, then ADD CONSTRAINT … UNIQUE USING INDEX",
    },
    CheckedRule {
        rule: Rule::RequireLockTimeout,
        why: "a DDL statement that waits for its lock behind a long query makes every later query on the table queue behind it: without a lock_timeout a migration can stall the application",
        instead: "make the migration's first statement SET LOCAL lock_timeout = '5s' (execute_unprepared), and retry the deploy if it times out",
    },
];

/// The rule called `name` among those `db-lint` checks.
pub fn checked_rule(name: &str) -> Option<&'static CheckedRule> {
    CHECKED_RULES
        .iter()
        .find(|checked| checked.rule.to_string() == name)
}

fn checked_rule_names() -> String {
    CHECKED_RULES
        .iter()
        .map(|checked| checked.rule.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One allowed rule in one migration, from a `// db-lint:` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOut {
    pub migration: String,
    pub line: u32,
    pub rule: String,
    pub reason: String,
}

/// Every opt-out of the migrations being linted, each one checked.
#[derive(Debug, Clone, Default)]
pub struct OptOuts(Vec<OptOut>);

impl OptOuts {
    /// The opt-outs of this crate's migration files, as build.rs collected them.
    pub fn compiled_in() -> Result<Self> {
        Self::parse(LINT_OPT_OUTS)
    }

    /// The opt-outs in `source`, the source of migration `migration` (for migrations that are
    /// not files of this crate, such as a test's).
    pub fn from_source(migration: &str, source: &str) -> Result<Self> {
        let found = crate::lint_directive::directives_in(source);
        let entries: Vec<(&str, u32, &str)> = found
            .iter()
            .map(|(line, text)| (migration, *line, text.as_str()))
            .collect();
        Self::parse(&entries)
    }

    /// Checks `(migration, line, text after the marker)` entries: each must have the form, a
    /// reason, and name a rule `db-lint` checks.
    pub fn parse(entries: &[(&str, u32, &str)]) -> Result<Self> {
        let mut opt_outs = Vec::with_capacity(entries.len());
        for &(migration, line, text) in entries {
            let place = format!("{migration}.rs:{line}");
            let directive = parse_directive(text).map_err(|error| anyhow!("{place}: {error}"))?;
            if checked_rule(&directive.rule).is_none() {
                bail!(
                    "{place}: `{MARKER} allow({})` names a rule db-lint does not check: use one of {}",
                    directive.rule,
                    checked_rule_names()
                );
            }
            opt_outs.push(OptOut {
                migration: migration.to_owned(),
                line,
                rule: directive.rule,
                reason: directive.reason,
            });
        }
        Ok(Self(opt_outs))
    }

    fn find(&self, migration: &str, rule: &str) -> Option<&OptOut> {
        self.0
            .iter()
            .find(|opt_out| opt_out.migration == migration && opt_out.rule == rule)
    }
}

/// One violation of a checked rule by one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub migration: String,
    pub statement: String,
    pub rule: String,
    /// squawk's own message.
    pub message: String,
    pub why: &'static str,
    pub instead: &'static str,
    /// The reason given where the migration allows this rule.
    pub allowed: Option<String>,
}

/// What a lint found, over the migrations it dry-ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub linted: Vec<String>,
    /// `(migration, why it was not linted)`.
    pub skipped: Vec<(String, String)>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
}

impl Report {
    /// The findings no opt-out allows; any makes the lint fail.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.allowed.is_none())
    }

    /// The rule of each finding of `migration`, in order.
    pub fn rules_of(&self, migration: &str) -> Vec<&str> {
        self.findings
            .iter()
            .filter(|finding| finding.migration == migration)
            .map(|finding| finding.rule.as_str())
            .collect()
    }
}

/// The findings of the checked rules over `statements`, one migration's SQL in order, on a
/// server of `pg_version`. Also returns a warning for each statement squawk could not parse.
pub fn lint_statements(
    migration: &str,
    statements: &[String],
    pg_version: Version,
) -> (Vec<Finding>, Vec<String>) {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(statements.len());
    for statement in statements {
        let statement = statement.trim();
        starts.push(text.len());
        text.push_str(statement);
        if !statement.ends_with(';') {
            text.push(';');
        }
        text.push('\n');
    }
    let parse = SourceFile::parse(&text);
    let statement_at = |offset: usize| starts.partition_point(|&start| start <= offset) - 1;
    let warnings = parse
        .errors()
        .iter()
        .map(|error| {
            let index = statement_at(usize::from(error.range().start()));
            format!(
                "{migration}: squawk cannot fully parse statement {} ({error}); it is linted as far as it parses",
                index + 1
            )
        })
        .collect();
    let mut linter = Linter::from(CHECKED_RULES.iter().map(|checked| checked.rule));
    // Each migration runs in its own transaction (those that opt out are not dry-run).
    linter.settings = LinterSettings {
        pg_version,
        assume_in_transaction: true,
    };
    let mut findings: Vec<(usize, Finding)> = linter
        .lint(&parse, &text)
        .into_iter()
        .filter_map(|violation| {
            let checked = checked_rule(&violation.code.to_string())?;
            let index = statement_at(usize::from(violation.text_range.start()));
            let finding = Finding {
                migration: migration.to_owned(),
                statement: statements[index].trim().to_owned(),
                rule: violation.code.to_string(),
                message: violation.message,
                why: checked.why,
                instead: checked.instead,
                allowed: None,
            };
            Some((index, finding))
        })
        .collect();
    // In statement order, and by rule name within a statement, so the output is stable.
    findings.sort_by(|(a, x), (b, y)| (a, &x.rule).cmp(&(b, &y.rule)));
    let findings = findings.into_iter().map(|(_, finding)| finding).collect();
    (findings, warnings)
}

/// Dry-runs `migrations` in order on `db` (which must log statements, see
/// [`execute_and_roll_back`]) and lints what each executed, applying `opt_outs`. A migration that
/// runs outside a transaction cannot be dry-run: it is skipped, and said so.
pub async fn dry_run_and_lint(
    db: &DatabaseConnection,
    migrations: Vec<Box<dyn MigrationTrait>>,
    opt_outs: &OptOuts,
) -> Result<Report> {
    let mut report = Report::default();
    let (transactional, outside): (Vec<_>, Vec<_>) = migrations
        .into_iter()
        .partition(|migration| migration.use_transaction() != Some(false));
    for migration in outside {
        report.skipped.push((
            migration.name().to_owned(),
            "it runs outside a transaction, which a dry run cannot imitate: review its SQL by hand"
                .to_owned(),
        ));
    }
    let pg_version = server_version(db).await?;
    for executed in execute_and_roll_back(db, &transactional).await? {
        add_migration(&mut report, &executed, opt_outs, pg_version);
    }
    Ok(report)
}

fn add_migration(
    report: &mut Report,
    executed: &ExecutedMigration,
    opt_outs: &OptOuts,
    pg_version: Version,
) {
    let (mut findings, warnings) =
        lint_statements(&executed.name, &executed.statements, pg_version);
    for finding in &mut findings {
        finding.allowed = opt_outs
            .find(&executed.name, &finding.rule)
            .map(|opt_out| opt_out.reason.clone());
    }
    for opt_out in opt_outs.0.iter().filter(|o| o.migration == executed.name) {
        if !findings.iter().any(|finding| finding.rule == opt_out.rule) {
            report.warnings.push(format!(
                "{}.rs:{}: `{MARKER} allow({})` allows nothing: {} no longer trips it; remove the comment",
                opt_out.migration, opt_out.line, opt_out.rule, opt_out.migration
            ));
        }
    }
    report.linted.push(executed.name.clone());
    report.findings.extend(findings);
    report.warnings.extend(warnings);
}

/// The server's version, for the rules that depend on it (PostgreSQL 11 and later add a column
/// with a constant default without a rewrite).
async fn server_version(db: &DatabaseConnection) -> Result<Version> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('server_version_num')",
        ))
        .await
        .map_err(database_failure)?
        .context("the server did not report its version")?;
    let number: String = row.try_get_by_index(0).map_err(database_failure)?;
    let number: u32 = number
        .parse()
        .with_context(|| format!("the server reported the version number {number:?}"))?;
    Version::from_str(&format!("{}.{}", number / 10_000, number % 100))
        .map_err(|error| anyhow!("cannot read the server's version: {error}"))
}

/// `lint`: lints the pending migrations of `M` on `db`, or with `all` every migration, dry-run
/// from `db`, which must then be empty. Prints the report in `format`; exits 1 when a finding is
/// not allowed. The caller holds the migration lock, and `db` logs statements.
pub(crate) async fn lint<M: MigratorTrait>(
    db: &DatabaseConnection,
    all: bool,
    format: Format,
) -> Result<ExitCode> {
    let opt_outs = OptOuts::compiled_in()?;
    let states = migration_states::<M>(db).await?;
    let names = if all {
        let applied = states.iter().filter(|s| s.applied_at.is_some()).count();
        if applied > 0 {
            bail!(
                "`lint --all` dry-runs every migration from an empty database, but this one has {applied} applied: run `cargo xtask db-lint --all`, which makes a scratch database, or point DATABASE_URL at an empty one"
            );
        }
        states.into_iter().map(|state| state.name).collect()
    } else {
        refuse_edited(&states, EditedRefusal::BuildOn)?;
        pending(states, None)
    };
    let migrations: Vec<Box<dyn MigrationTrait>> = M::migrations()
        .into_iter()
        .filter(|migration| names.iter().any(|name| name == migration.name()))
        .collect();
    let report = if migrations.is_empty() {
        Report::default()
    } else {
        dry_run_and_lint(db, migrations, &opt_outs).await?
    };
    format.print(&report, all)?;
    Ok(match report.failures().next() {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(statements: &[&str]) -> Vec<String> {
        let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
        let (findings, warnings) =
            lint_statements("m1", &statements, Version::from_str("16.2").unwrap());
        assert_eq!(warnings, Vec::<String>::new());
        findings.into_iter().map(|finding| finding.rule).collect()
    }

    #[test]
    fn every_checked_rule_is_a_squawk_rule_with_an_explanation() {
        for checked in CHECKED_RULES {
            let name = checked.rule.to_string();
            assert_eq!(Rule::from_str(&name), Ok(checked.rule), "{name}");
            assert!(
                !checked.why.is_empty() && !checked.instead.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_compiled_in_opt_outs_are_valid() {
        OptOuts::compiled_in().expect("every // db-lint: comment in migration/src is valid");
    }

    #[test]
    fn each_finding_names_the_statement_that_tripped_it() {
        let statements: Vec<String> = [
            "SET LOCAL lock_timeout = '5s'",
            "SELECT 1",
            "ALTER TABLE t ALTER COLUMN c TYPE bigint;",
        ]
        .map(str::to_owned)
        .to_vec();
        let (findings, _) = lint_statements("m1", &statements, Version::from_str("16.2").unwrap());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "changing-column-type");
        assert_eq!(
            findings[0].statement,
            "ALTER TABLE t ALTER COLUMN c TYPE bigint;"
        );
        assert_eq!(findings[0].migration, "m1");
    }

    #[test]
    fn set_local_lock_timeout_satisfies_the_timeout_rule() {
        assert_eq!(
            rules(&["CREATE INDEX i ON t (c)"]),
            ["require-concurrent-index-creation", "require-lock-timeout"]
        );
        assert_eq!(
            rules(&["SET LOCAL lock_timeout = '5s'", "CREATE INDEX i ON t (c)"]),
            ["require-concurrent-index-creation"]
        );
    }

    #[test]
    fn opt_outs_need_a_known_rule_and_a_reason() {
        let unknown = OptOuts::parse(&[("m1", 3, "allow(no-such-rule) reason: x")]).unwrap_err();
        assert!(unknown.to_string().starts_with("m1.rs:3: "), "{unknown}");
        assert!(
            unknown
                .to_string()
                .contains("use one of adding-required-field"),
            "{unknown}"
        );
        let no_reason = OptOuts::parse(&[("m1", 4, "allow(changing-column-type)")]).unwrap_err();
        assert!(
            no_reason.to_string().contains("gives no reason"),
            "{no_reason}"
        );
        let parsed =
            OptOuts::parse(&[("m1", 5, "allow(changing-column-type) reason: empty table")])
                .unwrap();
        assert_eq!(
            parsed.find("m1", "changing-column-type").unwrap().reason,
            "empty table"
        );
        assert!(parsed.find("m2", "changing-column-type").is_none());
    }
}
