//! The names `db_testing` gives databases and locks on the server: `{base}_tpl_{hash}` templates,
//! `{base}_test_{pid}_{counter}_{owner}` test databases, and advisory lock keys, all within
//! PostgreSQL's identifier limit and needing no escaping beyond quoting.

use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};

const TEMPLATE_LOCK_NAME: &str = "db-testing-template";
/// Leaves room for `_test_{pid}_{counter}_{owner}` inside PostgreSQL's 63-byte identifier limit:
/// 6 + 7 (the largest pid on Linux) + 1 + up to 16 + 1 + 8 bytes.
const MAX_BASE_NAME_BYTES: usize = 24;
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// The template of migrations fingerprinted `fingerprint` on a server of major version
/// `server_major_version`: a new fingerprint or server version is a new template.
pub(crate) fn template_name(
    base_name: &str,
    fingerprint: &str,
    server_major_version: u32,
) -> String {
    let mut hash = fnv1a(FNV_OFFSET_BASIS, fingerprint.as_bytes());
    hash = fnv1a(hash, format!(":pg{server_major_version}").as_bytes());
    format!("{base_name}_tpl_{:012x}", hash & 0xffff_ffff_ffff)
}

pub(crate) fn template_prefix(base: &str) -> String {
    format!("{base}_tpl_")
}

pub(crate) fn test_database_prefix(base: &str) -> String {
    format!("{base}_test_")
}

/// One lock per base, so templates of unrelated bases build side by side.
pub(crate) fn template_lock_key(base: &str) -> i64 {
    let hash = fnv1a(FNV_OFFSET_BASIS, TEMPLATE_LOCK_NAME.as_bytes());
    fnv1a(hash, base.as_bytes()) as i64
}

/// Lowercase ASCII letters, digits and `_` only, so that generated names need no escaping beyond
/// quoting and stay within the identifier limit.
pub(crate) fn sanitize_base_name(database: &str) -> String {
    let sanitized: String = database
        .chars()
        .map(|character| character.to_ascii_lowercase())
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '_' {
                character
            } else {
                '_'
            }
        })
        .take(MAX_BASE_NAME_BYTES)
        .collect();
    if sanitized.is_empty() {
        "db".to_owned()
    } else {
        sanitized
    }
}

pub(crate) fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::MIGRATIONS_FINGERPRINT;

    #[test]
    fn base_name_is_lowercase_identifier_characters_within_limit() {
        assert_eq!(sanitize_base_name("My-App.db"), "my_app_db");
        assert_eq!(sanitize_base_name(""), "db");
        assert_eq!(
            sanitize_base_name(&"x".repeat(100)).len(),
            MAX_BASE_NAME_BYTES
        );
    }

    #[test]
    fn template_name_fits_identifier_limit_and_depends_on_server_version() {
        let base = "x".repeat(MAX_BASE_NAME_BYTES);
        let on_15 = template_name(&base, MIGRATIONS_FINGERPRINT, 15);
        assert!(on_15.len() <= MAX_IDENTIFIER_BYTES, "{on_15}");
        assert_ne!(on_15, template_name(&base, MIGRATIONS_FINGERPRINT, 16));
        assert_eq!(on_15, template_name(&base, MIGRATIONS_FINGERPRINT, 15));
        assert_ne!(on_15, template_name(&base, "another fingerprint", 15));
    }
}
