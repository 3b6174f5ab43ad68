#!/usr/bin/env bash
# Checks that switching between `cargo xtask db-test` and plain cargo compiles nothing again:
# each plain cargo below must find every unit fresh, as cargo's JSON messages say (`"fresh"`),
# after a `cargo xtask db-test`, and again after a second one. A rebuild ping-pong (a nested
# cargo that inherits `cargo run`'s per-package variables, or a package built with another
# feature set) shows up as a unit that is not fresh.
#
# Needs: cargo, cargo-nextest (else its step is skipped, said so), python3, and a server that
# `cargo xtask db-test` can use (it prepares the template before `--no-run` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "no-rebuild: python3 is missing (apt install python3)" >&2; exit 2; }

# Prints the units that were compiled rather than found fresh; fails if there are any.
all_fresh() {
    local label=$1
    shift
    echo "--- $label"
    "$@" 2>/dev/null | python3 -c '
import json, sys
built = []
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") == "compiler-artifact" and message.get("fresh") is False:
        built.append(message["target"]["name"] + " (" + message["package_id"].split("#")[-1] + ")")
if built:
    print("  compiled again: " + ", ".join(sorted(set(built))))
    sys.exit(1)
print("  nothing compiled")
'
}

has_nextest() { cargo nextest --version >/dev/null 2>&1; }

plain_cargo() {
    local failed=0
    if has_nextest; then
        all_fresh "cargo nextest run --workspace --no-run" \
            cargo nextest run --workspace --no-run --cargo-message-format json || failed=1
    else
        echo "--- cargo nextest: SKIPPED, cargo-nextest is not installed"
    fi
    all_fresh "cargo test --workspace --no-run" cargo test --workspace --no-run --message-format json || failed=1
    # Each library member alone, as a developer working on one crate runs it (xtask's own tests
    # are left out: taking the workspace's feature set would make them link sea-orm).
    for package in db db-macros db-testing migration dbops-common dbops-connect; do
        all_fresh "cargo test -p $package --no-run" cargo test -p "$package" --no-run --message-format json || failed=1
    done
    all_fresh "cargo build --workspace --all-targets" cargo build --workspace --all-targets --message-format json || failed=1
    return $failed
}

echo "--- cargo xtask db-test -- --no-run (first)"
cargo xtask -q db-test -- --no-run
plain_cargo
echo "--- cargo xtask db-test -- --no-run (again)"
cargo xtask -q db-test -- --no-run
plain_cargo
echo "no-rebuild: switching between cargo xtask and plain cargo compiled nothing"
