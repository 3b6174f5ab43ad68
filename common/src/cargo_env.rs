//! The variables `cargo run` and `cargo test` set for the package they run, which a cargo
//! started from that process would otherwise inherit.

/// Names of the per-package variables in this process's environment. Build scripts declare
/// some of them with `rerun-if-env-changed` (ring's names `CARGO_PKG_NAME`), so a nested cargo
/// that keeps them rebuilds those crates, and everything above them, whenever it is started from
/// another package than the last time. `CARGO` itself is not among them: it names the toolchain.
pub fn package_vars() -> Vec<String> {
    const EXACT: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("CARGO_PKG_") || EXACT.contains(&name.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cargo_tests_own_variables_are_found_and_cargo_itself_is_kept() {
        // `cargo test` sets both for the test binary it runs.
        let found = super::package_vars();
        assert!(
            found.iter().any(|name| name == "CARGO_PKG_NAME"),
            "{found:?}"
        );
        assert!(
            found.iter().any(|name| name == "CARGO_MANIFEST_DIR"),
            "{found:?}"
        );
        assert!(!found.iter().any(|name| name == "CARGO"), "{found:?}");
    }
}
