#!/usr/bin/env bash
# Checks the dependency directions that ARCHITECTURE.md promises, so that they stay true:
#   - no xtask command module imports another command module;
#   - the xtask ground (config, pg, process, ui, …) imports no command, backend or lifecycle;
#   - xtask never links sea-orm;
#   - the `db` library's normal dependencies include no CLI (clap, sea-orm-cli, tracing-subscriber).
# Needs only cargo and grep; prints every violation and exits 1 if there is one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=0
fail() { echo "architecture: $*" >&2; failed=1; }

# A command is a file xtask/src/<name>.rs, or a directory xtask/src/<name>/ for a larger one.
commands=(xtask/src/db_*.rs xtask/src/bench/*.rs)
command_name() { local file=${1#xtask/src/}; echo "${file%%[/.]*}"; }
names=()
for file in "${commands[@]}"; do names+=("$(command_name "$file")"); done
for file in "${commands[@]}"; do
    self=$(command_name "$file")
    for other in "${names[@]}"; do
        [[ $other == "$self" ]] && continue
        if grep -nE "(crate|super)::$other\b|^\s*$other::" "$file" >/dev/null; then
            fail "command $self imports command $other ($file); move the shared step to backend/lifecycle.rs"
        fi
    done
done

ground=(xtask/src/config.rs xtask/src/pg.rs xtask/src/process.rs xtask/src/ui.rs
    xtask/src/pg_install.rs xtask/src/postmaster.rs xtask/src/private_dir.rs
    xtask/src/state_lock.rs xtask/src/cli_args.rs xtask/src/paths.rs xtask/src/context.rs
    xtask/src/cluster_dir.rs xtask/src/scram.rs xtask/src/tls/*.rs)
for file in "${ground[@]}"; do
    [[ -f $file ]] || continue
    if grep -nE "crate::(db_[a-z_]+|bench|backend)\b" "$file" | grep -v "crate::backend::Ctx\b" >/dev/null; then
        fail "$file is ground but imports upward: $(grep -nE "crate::(db_[a-z_]+|bench|backend)\b" "$file" | head -1)"
    fi
done

if cargo tree -q -e normal -p xtask --prefix none | grep -qE '^sea-orm '; then
    fail "xtask links sea-orm; run the migration crate as a process instead"
fi
cli=$(cargo tree -q -e normal -p db --prefix none | grep -E '^(clap|sea-orm-cli|tracing-subscriber) ' | cut -d' ' -f1 | sort -u || true)
[[ -z $cli ]] || fail "the db library's normal dependencies include CLI crates: $(echo "$cli" | tr '\n' ' ')"

((failed == 0)) && echo "architecture: layers point down; xtask links no sea-orm; db carries no CLI"
exit "$failed"
