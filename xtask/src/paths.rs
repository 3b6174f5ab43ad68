//! `project_root()`: the workspace every command works in, wherever cargo was started from.

use std::path::PathBuf;

/// The workspace root: `cargo run` sets `CARGO_MANIFEST_DIR` for the binary it starts, and the
/// compile-time value covers running the binary directly.
pub fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .ancestors()
        .nth(1)
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
