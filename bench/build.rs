//! Writes the synthetic migrations the benchmark runs: `$OUT_DIR/migrations_{1,50,200}/NNNN_m.sql`.
//!
//! Each migration creates one table and one index, the same schema as the benchmark's SeaORM
//! migrator (src/synthetic.rs), so both sides of the comparison build the same
//! database. The files follow sqlx's `<VERSION>_<DESCRIPTION>.sql` layout, as in a project's
//! `migrations/` directory.

use std::{fs, path::PathBuf};

/// The migration counts `cargo xtask bench` compares at; `src/main.rs` (`SIZES`) accepts only these.
const SIZES: [usize; 3] = [1, 50, 200];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for size in SIZES {
        let dir = out_dir.join(format!("migrations_{size}"));
        // A fresh directory each time, so no migration of an earlier build can linger in it.
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("cannot clear the migrations directory in OUT_DIR");
        }
        fs::create_dir_all(&dir).expect("cannot create the migrations directory in OUT_DIR");
        for i in 1..=size {
            let sql = format!(
                "CREATE TABLE bench_t{i} (id bigserial PRIMARY KEY, label text NOT NULL);\n\
                 CREATE INDEX bench_t{i}_label ON bench_t{i} (label);\n"
            );
            fs::write(dir.join(format!("{i:04}_m.sql")), sql)
                .expect("cannot write a migration into OUT_DIR");
        }
    }
}
