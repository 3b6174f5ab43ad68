#!/usr/bin/env bash
# Builds the stand-in PostgreSQL TEST-FIXTURE image localhost/postgres-standin:16
# without any image registry, so the docker backend's end-to-end tests run the major version
# that postgres:16-alpine runs:
#   1. PostgreSQL 16 binaries from PyPI (the relocatable pgserver wheel, unpacked and cached by
#      ci/pg-binaries.sh);
#   2. a minimal Debian rootfs (Essential packages only: bash, coreutils, setpriv, glibc, zlib)
#      made by mmdebstrap (or debootstrap) from the machine's Debian mirror, with those
#      binaries in /usr/lib/postgresql/16 and a `postgres` user; `docker import` of it (tag
#      localhost/postgres-standin-rootfs:16);
#   3. a small layer on top (Dockerfile: entrypoint.sh, ENV, STOPSIGNAL).
# Idempotent: does nothing when the image exists and was built from the current inputs;
# rebuilds only step 3 when just Dockerfile/entrypoint.sh changed (labels hold the hashes).
# Env: FORCE=1 rebuilds everything; STANDIN_TAG, DEBIAN_SUITE, DEBIAN_MIRROR,
# DEBIAN_SECURITY_MIRROR override the defaults; PG_BINARIES_DIR is ci/pg-binaries.sh's cache.
# Users keep postgres:16-alpine; tests select this image with
# POSTGRES_IMAGE=localhost/postgres-standin:16 (see README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
TAG="${STANDIN_TAG:-localhost/postgres-standin:16}"
BASE_TAG="${TAG%%:*}-rootfs:${TAG##*:}"
# Tags of the PostgreSQL 15 image this script used to build; removed once 16 is built.
LEGACY_TAGS=(localhost/postgres-standin:15 localhost/postgres-standin-rootfs:15)
SUITE="${DEBIAN_SUITE:-bookworm}"
FORCE="${FORCE:-0}"
start=$SECONDS

log() { printf 'standin-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
done_msg() { log "$1 ($((SECONDS - start)) s)"; }

command -v docker >/dev/null || die "docker CLI not found; install docker and start the engine"
docker info >/dev/null 2>&1 || die "no docker engine answers (is dockerd running, and may this user use it?)"

# Step 1 first: it is cached, and its version is part of the rootfs's identity.
pg_bin="$(bash "$repo/ci/pg-binaries.sh" 16)"
pg_version="$("$pg_bin/postgres" --version)"
# The wheel's layout: <root>/<package>/pginstall/bin, libraries in <root>/<package>.libs.
pg_install="$(dirname "$pg_bin")"
pg_libs=("$(dirname "$(dirname "$pg_install")")"/*.libs)
[ -d "${pg_libs[0]}" ] || die "no *.libs directory beside $(dirname "$pg_install")"

# The rootfs is customised by this (run as root, $1 = the rootfs directory).
customize="$(
    cat <<'HOOK'
set -eu
root=$1 install=$2 libs=$3
# The binaries find their libraries through an RPATH relative to themselves
# ($ORIGIN/../../../<package>.libs): from /usr/lib/postgresql/16/bin that is /usr/lib.
mkdir -p "$root/usr/lib/postgresql"
cp -a "$install" "$root/usr/lib/postgresql/16"
cp -a "$libs" "$root/usr/lib/"
rm -rf "$root/usr/lib/postgresql/16/include" "$root/usr/lib/postgresql/16/lib/postgresql/pgxs"
rm -f "$root"/usr/lib/postgresql/16/lib/*.a
chown -R 0:0 "$root/usr/lib/postgresql/16" "$root/usr/lib/$(basename "$libs")"
# The server's user, as in the official Debian-based image (uid and gid 999).
grep -q '^postgres:' "$root/etc/group" || echo 'postgres:x:999:' >>"$root/etc/group"
grep -q '^postgres:' "$root/etc/passwd" ||
    echo 'postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash' >>"$root/etc/passwd"
mkdir -p "$root/var/lib/postgresql"
chown 999:999 "$root/var/lib/postgresql"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*.log "$root"/var/log/apt/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
HOOK
)"

# Labels: hashes of each step's inputs, to notice edits and a new PostgreSQL.
rootfs_hash="$(printf '%s\n%s\n%s\n' "$SUITE" "$pg_version" "$customize" | sha256sum | cut -c1-16)"
inputs_hash="$(cat "$here/Dockerfile" "$here/entrypoint.sh" | sha256sum | cut -c1-16)-$rootfs_hash"
label_key=org.dbops.standin.inputs
rootfs_label_key=org.dbops.standin.rootfs
label_of() { docker image inspect -f "{{ index .Config.Labels \"$1\" }}" "$2" 2>/dev/null || true; }

if [ "$FORCE" != 1 ] && [ "$(label_of "$label_key" "$TAG")" = "$inputs_hash" ]; then
    done_msg "$TAG ($pg_version) is up to date, nothing to do"
    exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Mirror: first Debian (non-security) URI of the machine's apt sources.
apt_uris() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -nE 's/^[[:space:]]*URIs:[[:space:]]*//p; s/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' |
        tr ' ' '\n' | grep -E '^https?://' || true
}
MIRROR="${DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -n1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SEC_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security/?$' | head -n1)}"
SEC_MIRROR="${SEC_MIRROR:-http://deb.debian.org/debian-security}"

build_rootfs() {
    local work tar hook
    work="$(mktemp -d)"
    trap 'as_root rm -rf "$work"' RETURN
    tar="$work/rootfs.tar"
    hook="$work/customize.sh"
    printf '%s\n' "$customize" >"$hook"
    log "building a minimal $SUITE rootfs from $MIRROR, with $pg_version from $pg_install"
    if ! command -v mmdebstrap >/dev/null && ! command -v debootstrap >/dev/null; then
        log "installing mmdebstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null ||
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if command -v mmdebstrap >/dev/null; then
        # variant essential = the Essential packages and nothing else (no apt): bash,
        # coreutils, util-linux (setpriv), glibc with C.UTF-8, zlib. No docs/man/translations.
        as_root mmdebstrap --variant=essential --include=zlib1g \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook="sh '$hook' \"\$1\" '$pg_install' '${pg_libs[0]}'" \
            "$SUITE" "$tar" \
            "deb $MIRROR $SUITE main" \
            "deb $MIRROR $SUITE-updates main" \
            "deb $SEC_MIRROR $SUITE-security main" >&2
    else
        as_root debootstrap --variant=minbase --include=zlib1g "$SUITE" "$work/root" "$MIRROR" >&2
        as_root sh "$hook" "$work/root" "$pg_install" "${pg_libs[0]}"
        as_root tar -C "$work/root" -cf "$tar" .
    fi
    log "importing rootfs ($(du -h "$tar" | cut -f1)) as $BASE_TAG"
    docker import --change "LABEL $rootfs_label_key=$rootfs_hash" "$tar" "$BASE_TAG" >/dev/null
}

previous_base=""
if [ "$FORCE" = 1 ] || [ "$(label_of "$rootfs_label_key" "$BASE_TAG")" != "$rootfs_hash" ]; then
    previous_base="$(docker image inspect -f '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)"
    build_rootfs
else
    log "reusing rootfs image $BASE_TAG"
fi

log "building $TAG"
previous="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
# Classic builder with --pull=false: FROM resolves to the local base image,
# nothing is fetched from a registry. (BuildKit needs the buildx plugin, which
# Debian's docker 20.10 lacks; the classic builder prints a deprecation notice.)
DOCKER_BUILDKIT=0 docker build --pull=false -q \
    --build-arg "BASE=$BASE_TAG" \
    --label "$label_key=$inputs_hash" \
    -t "$TAG" "$here" >/dev/null
# The image must run the server it claims to.
got="$(docker run --rm "$TAG" postgres --version)"
[ "$got" = "$pg_version" ] || die "$TAG runs '$got', expected '$pg_version'"
# Drop the images this build replaced, unless something still uses them.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
if [ -n "$previous_base" ] && [ "$previous_base" != "$(docker image inspect -f '{{.Id}}' "$BASE_TAG")" ]; then
    docker image rm "$previous_base" >/dev/null 2>&1 || true
fi
for legacy in "${LEGACY_TAGS[@]}"; do
    if [ "$legacy" != "$TAG" ] && [ "$legacy" != "$BASE_TAG" ] && docker image inspect "$legacy" >/dev/null 2>&1; then
        log "removing $legacy (PostgreSQL 15), replaced by $TAG"
        docker image rm "$legacy" >/dev/null 2>&1 || true
    fi
done

size="$(docker image inspect -f '{{.Size}}' "$TAG")"
done_msg "built $TAG ($got), $((size / 1024 / 1024)) MiB"
