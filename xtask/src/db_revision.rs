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
    let lib_before = prepare(&migration_dir, &name)?;
    let before = migration_files(&migration_dir)?;
    bins::run_in(
        ctx,
        &migration_dir,
        &["generate", &name],
        bins::Stdout::Progress,
    )?;
    let file = finish(&migration_dir, &before, &lib_before)?;
    ui::info(format!(
        "created migration/src/{file} and registered it in migration/src/lib.rs"
    ));
    ui::info("write its `up` and `down`, then run `cargo xtask db-migrate`");
    Ok(ExitCode::SUCCESS)
}

/// Before the generator runs: `lib.rs` must be safe for it to edit, and no migration may have
/// `name` already. Returns `lib.rs` as it is.
fn prepare(migration_dir: &Path, name: &str) -> Result<String> {
    let lib = migration_dir.join("src/lib.rs");
    let lib_text =
        fs::read_to_string(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
    check_editable(&lib_text)
        .with_context(|| format!("the generator cannot safely edit {}", lib.display()))?;
    refuse_reused_name(&lib_text, &migration_files(migration_dir)?, name)?;
    Ok(lib_text)
}

/// Refuses a second migration named `name`, whether registered in `lib` or only a file. The
/// same message twice is almost always the same command run again (shell history, a retry), and
/// two files differing only in their timestamps leave the user to guess which one to fill in,
/// while the other is applied as a no-op. Rails' generator refuses likewise; a new change
/// under the same words only needs a more specific message.
fn refuse_reused_name(lib: &str, files: &[String], name: &str) -> Result<()> {
    let existing = module_names(lib)
        .into_iter()
        .chain(files.iter().map(|file| file.trim_end_matches(".rs")))
        // mYYYYMMDD_HHMMSS_ is 17 ASCII bytes (checked by `module_names`).
        .find(|module| module.get(17..) == Some(name));
    if let Some(module) = existing {
        bail!(
            "a migration named {name:?} already exists (migration/src/{module}.rs): edit that one if it has not been applied anywhere else yet, or describe the new change differently with -m"
        );
    }
    Ok(())
}

/// After the generator ran: writes our template into the one file it created (not among
/// `before`) and returns that file's name.
fn finish(migration_dir: &Path, before: &[String], lib_before: &str) -> Result<String> {
    let created: Vec<_> = migration_files(migration_dir)?
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
    if migrations_are_public(lib_before) {
        make_public(&migration_dir.join("src/lib.rs"), module)?;
    }
    Ok(file.clone())
}

/// Whether the migrations `lib` declares are `pub mod`, as the last one is.
fn migrations_are_public(lib: &str) -> bool {
    lib.lines()
        .rfind(|line| !module_names(line).is_empty())
        .is_some_and(|line| line.trim_start().starts_with("pub "))
}

/// The generator always writes `mod {module};`; declares it `pub mod` like the others instead.
fn make_public(lib: &Path, module: &str) -> Result<()> {
    let text = fs::read_to_string(lib).with_context(|| format!("cannot read {}", lib.display()))?;
    let private = format!("\nmod {module};\n");
    if !text.contains(&private) {
        ui::warn(format!(
            "the generator did not declare `mod {module};` where expected: declare it `pub mod {module};` in {} like the others",
            lib.display()
        ));
        return Ok(());
    }
    let public = text.replacen(&private, &format!("\npub mod {module};\n"), 1);
    fs::write(lib, public).with_context(|| format!("cannot write {}", lib.display()))
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

    /// The real `lib.rs`'s shape: its migrations are `pub mod`, so tests can name them.
    const PUBLIC: &str = "pub use sea_orm_migration::prelude::*;\n\npub mod checksum;\n\npub mod m20261124_120000_create_projects;\n\npub struct Migrator;\n\n#[async_trait::async_trait]\nimpl MigratorTrait for Migrator {\n    fn migrations() -> Vec<Box<dyn MigrationTrait>> {\n        vec![Box::new(m20261124_120000_create_projects::Migration)]\n    }\n}\n";

    const NEW: &str = "m20261202_184807_add_user_table";

    /// What SeaORM's generator (sea-orm-cli 2.0.4, `migration generate add_user_table`) makes
    /// of `lib`: a plain `mod` line after the last migration's, and the list rewritten.
    fn generated(lib: &str) -> String {
        let last = module_names(lib).last().copied().unwrap().to_owned();
        let line_end = lib.find(&format!("{last};\n")).unwrap() + last.len() + 2;
        let mut out = lib.to_owned();
        out.insert_str(line_end, &format!("mod {NEW};\n"));
        let start = out.find("vec![").unwrap();
        let end = start + out[start..].find("]\n").unwrap() + 2;
        let mut list = String::from("vec![\n");
        for module in module_names(lib).into_iter().chain([NEW]) {
            list.push_str(&format!("            Box::new({module}::Migration),\n"));
        }
        list.push_str("        ]\n");
        out.replace_range(start..end, &list);
        out
    }

    /// A migration crate in a temporary directory: `src/lib.rs` and a file per migration.
    fn crate_dir(lib: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("lib.rs"), lib).unwrap();
        for module in module_names(lib) {
            fs::write(src.join(format!("{module}.rs")), "").unwrap();
        }
        dir
    }

    /// Runs `finish` on `lib` after a simulated generator run; returns the new `lib.rs`.
    fn register(lib: &str) -> String {
        let dir = crate_dir(lib);
        let before = migration_files(dir.path()).unwrap();
        fs::write(dir.path().join("src/lib.rs"), generated(lib)).unwrap();
        fs::write(dir.path().join(format!("src/{NEW}.rs")), "todo!()").unwrap();
        let file = finish(dir.path(), &before, lib).unwrap();
        assert_eq!(file, format!("{NEW}.rs"));
        let written = fs::read_to_string(dir.path().join("src").join(&file)).unwrap();
        assert!(
            written.contains("impl MigrationTrait for Migration"),
            "{written}"
        );
        fs::read_to_string(dir.path().join("src/lib.rs")).unwrap()
    }

    #[test]
    fn a_new_migration_is_declared_like_the_existing_ones() {
        let public = register(PUBLIC);
        assert!(public.contains(&format!("\npub mod {NEW};\n")), "{public}");
        check_editable(&public).unwrap();

        let private = register(GOOD);
        assert!(private.contains(&format!("\nmod {NEW};\n")), "{private}");
        check_editable(&private).unwrap();
    }

    #[test]
    fn a_message_used_before_is_refused_naming_the_migration() {
        let dir = crate_dir(GOOD);
        let err = format!("{:#}", prepare(dir.path(), "add_users").unwrap_err());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("m20261125_080000_add_users"), "{err}");
        // Only the whole name counts, and a file the list does not register counts too.
        prepare(dir.path(), "add_user").unwrap();
        fs::write(dir.path().join("src/m20261126_090000_add_teams.rs"), "").unwrap();
        let err = format!("{:#}", prepare(dir.path(), "add_teams").unwrap_err());
        assert!(err.contains("m20261126_090000_add_teams"), "{err}");
    }

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
