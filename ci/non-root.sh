#!/usr/bin/env bash
# Runs xtask's tests and a lifecycle smoke as an unprivileged user, as most developers are:
# with a copy of the checkout, a toolchain and a cargo home of that user's own, and HOME and
# the state directory in a fresh temporary directory. Run as root; it creates the user
# `xtask-ci` if it is missing. Nothing of root's checkout, target or toolchain is changed.
# PG_BIN, when set and reachable by that user (e.g. ci/pg-binaries.sh's cache under /var/tmp),
# is the smoke's PostgreSQL; otherwise the local backend finds one itself. (xtask's tests
# choose their binaries themselves, whatever PG_BIN says.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) != 0 ]]; then
    echo "non-root: already unprivileged; run the tests directly (cargo test -p xtask)" >&2
    exit 0
fi
for tool in setpriv useradd tar git python3 cargo rustc; do
    command -v "$tool" >/dev/null || {
        echo "non-root: $tool is missing: install util-linux, passwd, tar, git and python3 (apt-get install), and Rust (rustup)" >&2
        exit 1
    }
done
user=xtask-ci
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

work=$(mktemp -d /tmp/xtask-non-root.XXXXXX)
cleanup() {
    # The user's servers are stopped by the tests and the smoke; any left over die with them.
    pkill -u "$user" -x postgres 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir "$work/home" "$work/cargo-home" "$work/repo"

# The checkout as it is, tracked and new files alike, without target/ or .data/.
git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$work/repo"
# The toolchain, hard-linked where the filesystem allows (only read), and the crates cache.
sysroot=$(rustc --print sysroot)
cp -al "$sysroot" "$work/toolchain" 2>/dev/null || cp -a "$sysroot" "$work/toolchain"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[[ -d $cargo_home/registry ]] && cp -a "$cargo_home/registry" "$work/cargo-home/"
chown -R "$user:" "$work/home" "$work/cargo-home" "$work/repo"

pg_bin=()
if [[ -n ${PG_BIN:-} ]]; then
    if setpriv --reuid="$user" --regid="$user" --clear-groups -- test -x "$PG_BIN/postgres"; then
        pg_bin=(PG_BIN="$PG_BIN")
        echo "non-root: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') from PG_BIN=$PG_BIN"
    else
        echo "non-root: $user cannot reach PG_BIN=$PG_BIN; the local backend finds PostgreSQL itself"
    fi
fi

as_user() {
    (cd "$work/repo" && setpriv --reuid="$user" --regid="$user" --clear-groups -- \
        env -i HOME="$work/home" CARGO_HOME="$work/cargo-home" "${pg_bin[@]}" \
        PATH="$work/toolchain/bin:/usr/local/bin:/usr/bin:/bin" \
        RUSTC="$work/toolchain/bin/rustc" CARGO_TARGET_DIR="$work/repo/target" \
        DB_STATE_DIR="$work/home/state" CI="${CI:-}" TERM=dumb "$@")
}

echo "non-root: as $user (uid $(id -u "$user")), in $work/repo"
as_user cargo test -p xtask --no-fail-fast

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
smoke() { as_user env DB_BACKEND=local POSTGRES_PORT="$port" DATABASE_URL= cargo xtask "$@"; }
smoke db-up
smoke db-status
smoke db-down
smoke db-down --volumes
echo "non-root: lifecycle smoke passed"
