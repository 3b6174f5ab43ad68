//! `cargo xtask db-revision -m "..."`: a new timestamped migration from SeaORM's generator, registered in `lib.rs`.

use std::{fs, path::Path, process::ExitCode};

use anyhow::{Context, Result, bail};

use crate::{bins, context::Ctx, ui};

#[derive(clap::Args)]
pub struct Args {
    /// What the migration does, e.g. "Add user table"; it becomes the file name.
    #[arg(short, long)]
    pub message: String,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let name = migration_name(&args.message)?;
    let migration_dir = ctx.cfg.root.join("migration");
    let lib = migration_dir.join("src/lib.rs");
    let lib_text =
        fs::read_to_string(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
    check_editable(&lib_text)
        .with_context(|| format!("the generator cannot safely edit {}", lib.display()))?;

    let before = migration_files(&migration_dir)?;
    bins::run_in(ctx, &migration_dir, &["generate", &name])?;
    let created: Vec<_> = migration_files(&migration_dir)?
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    let [file] = created.as_slice() else {
        bail!(
            "the generator did not create exactly one migration file: check {}",
            migration_dir.join("src").display()
        );
    };
    let module = file.trim_end_matches(".rs");
    let path = migration_dir.join("src").join(file);
    fs::write(&path, template(module))
        .with_context(|| format!("cannot write {}", path.display()))?;
    ui::info(format!(
        "created migration/src/{file} and registered it in migration/src/lib.rs"
    ));
    ui::info("write its `up` and `down`, then run `cargo xtask db-migrate`");
    Ok(ExitCode::SUCCESS)
}

/// "Add user table" becomes `add_user_table`; the generator adds the timestamp.
pub fn migration_name(message: &str) -> Result<String> {
    let mut name = String::new();
    for c in message.trim().chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') && !name.is_empty() {
            name.push('_');
        }
    }
    let name = name.trim_end_matches('_').to_owned();
    if name.is_empty() {
        bail!(
            "migration message {message:?} has no letters or digits: say what it does, e.g. -m \"Add user table\""
        );
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("migration message {message:?} must start with a letter, e.g. -m \"Add user table\"");
    }
    if name.len() > 60 {
        bail!(
            "migration message {message:?} is too long for a file name: keep it under 60 characters"
        );
    }
    Ok(name)
}

/// SeaORM's generator rewrites `lib.rs` with two regular expressions; this checks that they
/// will find what they expect, so that it cannot silently drop or garble registrations.
pub fn check_editable(lib: &str) -> Result<()> {
    let modules = module_names(lib);
    if lib.matches("vec![").count() != 1 {
        bail!("it must hold exactly one `vec![` (the migrations list)");
    }
    let start = lib.find("vec![").expect("counted above");
    let Some(close) = lib[start..].find("]\n").map(|i| start + i) else {
        bail!("its migrations list must end with `]` at the end of a line");
    };
    if lib[close + 2..].contains("]\n") {
        bail!("a `]` ends a line after the migrations list");
    }
    let listed: Vec<&str> = lib[start..close]
        .split("Box::new(")
        .skip(1)
        .filter_map(|entry| entry.split("::Migration").next())
        .map(str::trim)
        .collect();
    if listed != modules {
        bail!("its `mod m…;` lines and its migrations list disagree; make them match, in order");
    }
    Ok(())
}

fn module_names(lib: &str) -> Vec<&str> {
    lib.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            let name = rest.strip_prefix("mod ")?.strip_suffix(';')?.trim();
            // mYYYYMMDD_HHMMSS_name, checked byte by byte so that no input can split a character.
            let bytes = name.as_bytes();
            let is_migration = bytes.len() > 17
                && bytes[0] == b'm'
                && bytes[1..9].iter().all(u8::is_ascii_digit)
                && bytes[9] == b'_'
                && bytes[10..16].iter().all(u8::is_ascii_digit)
                && bytes[16] == b'_';
            is_migration.then_some(name)
        })
        .collect()
}

fn migration_files(dir: &Path) -> Result<Vec<String>> {
    let src = dir.join("src");
    let mut files = Vec::new();
    for entry in fs::read_dir(&src).with_context(|| format!("cannot list {}", src.display()))? {
        let name = entry
            .with_context(|| format!("cannot list {}", src.display()))?
            .file_name();
        let name = name.to_string_lossy();
        if name.starts_with('m')
            && name.ends_with(".rs")
            && !module_names(&format!("mod {};", &name[..name.len() - 3])).is_empty()
        {
            files.push(name.into_owned());
        }
    }
    Ok(files)
}

/// Replaces the generator's sample, whose `todo!()` would panic and whose unused import
/// would fail clippy, with a migration that compiles cleanly and applies as a no-op.
fn template(module: &str) -> String {
    format!(
        r#"//! Migration `{module}`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {{
    fn name(&self) -> &str {{
        "{module}"
    }}
}}

#[async_trait::async_trait]
impl MigrationTrait for Migration {{
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {{
        // The schema change goes here, e.g. manager.create_table(...); see MIGRATIONS.md.
        let _ = manager;
        Ok(())
    }}

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {{
        // Undo exactly what `up` did, so that rollbacks leave nothing behind.
        let _ = manager;
        Ok(())
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_module_names() {
        assert_eq!(migration_name("Add user table").unwrap(), "add_user_table");
        assert_eq!(
            migration_name("  add-index: users.email ").unwrap(),
            "add_index_users_email"
        );
        for bad in ["", "   ", "!!!", "2fa secrets", &"x".repeat(61)] {
            let err = migration_name(bad).unwrap_err().to_string();
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    const GOOD: &str = "pub use sea_orm_migration::prelude::*;\n\nmod m20261124_120000_create_projects;\nmod m20261125_080000_add_users;\n\npub struct Migrator;\n\n#[async_trait::async_trait]\nimpl MigratorTrait for Migrator {\n    fn migrations() -> Vec<Box<dyn MigrationTrait>> {\n        vec![\n            Box::new(m20261124_120000_create_projects::Migration),\n            Box::new(m20261125_080000_add_users::Migration),\n        ]\n    }\n}\n";

    #[test]
    fn standard_lib_is_editable() {
        check_editable(GOOD).unwrap();
    }

    #[test]
    fn the_real_lib_is_editable() {
        let lib = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migration/src/lib.rs"
        ))
        .unwrap();
        check_editable(&lib).unwrap();
    }

    #[test]
    fn unsafe_libs_are_refused() {
        let second_vec = GOOD.replace(
            "pub struct Migrator;",
            "pub fn names() -> Vec<u8> { vec![1] }\npub struct Migrator;",
        );
        let trailing_bracket = format!("{GOOD}const X: [u8; 1] = [\n    1,\n]\n;\n");
        let unregistered = GOOD.replace(
            "            Box::new(m20261125_080000_add_users::Migration),\n",
            "",
        );
        for lib in [second_vec, trailing_bracket, unregistered] {
            let err = check_editable(&lib).unwrap_err().to_string();
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
