//! No code: this crate's dependencies give per-package test builds the workspace's feature set (see Cargo.toml).
