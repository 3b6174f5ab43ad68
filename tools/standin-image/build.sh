#!/usr/bin/env bash
# Builds the stand-in PostgreSQL TEST-FIXTURE image localhost/postgres-standin:15
# without any image registry:
#   1. a minimal Debian rootfs with postgresql-15, made by mmdebstrap (or
#      debootstrap) from the machine's Debian mirror;
#   2. `docker import` of that rootfs (tag localhost/postgres-standin-rootfs:15);
#   3. a small layer on top (Dockerfile: entrypoint.sh, ENV, STOPSIGNAL).
# Idempotent: does nothing when the image exists and was built from the current
# Dockerfile + entrypoint.sh; rebuilds only step 3 when just those changed.
# Env: FORCE=1 rebuilds everything; STANDIN_TAG, DEBIAN_SUITE, DEBIAN_MIRROR,
# DEBIAN_SECURITY_MIRROR override the defaults.
# Users keep postgres:16-alpine; tests select this image with
# POSTGRES_IMAGE=localhost/postgres-standin:15 (see README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG="${STANDIN_TAG:-localhost/postgres-standin:15}"
BASE_TAG="${TAG%%:*}-rootfs:${TAG##*:}"
SUITE="${DEBIAN_SUITE:-bookworm}"
FORCE="${FORCE:-0}"
start=$SECONDS

log() { printf 'standin-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
done_msg() { log "$1 ($((SECONDS - start)) s)"; }

command -v docker >/dev/null || die "docker CLI not found; install docker and start the engine"
docker info >/dev/null 2>&1 || die "no docker engine answers (is dockerd running, and may this user use it?)"

# Label on the final image: hash of the inputs of step 3, to notice edits.
inputs_hash="$(cat "$here/Dockerfile" "$here/entrypoint.sh" | sha256sum | cut -c1-16)"
label_key=org.dbops.standin.inputs

if [ "$FORCE" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    have="$(docker image inspect -f "{{ index .Config.Labels \"$label_key\" }}" "$TAG" 2>/dev/null || true)"
    if [ "$have" = "$inputs_hash" ]; then
        done_msg "$TAG is up to date, nothing to do"
        exit 0
    fi
    log "$TAG exists but Dockerfile/entrypoint.sh changed; rebuilding the top layer"
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

# Shell snippet, $1 = rootfs: drop the JIT and locale sources (see below).
# shellcheck disable=SC2016 # $1 is expanded later, by the hook's shell
STRIP_HOOK='rm -rf "$1"/usr/lib/*/libLLVM* "$1"/usr/lib/*/libz3.so* "$1"/usr/lib/postgresql/15/lib/llvmjit* "$1"/usr/lib/postgresql/15/lib/bitcode "$1"/usr/share/i18n/locales "$1"/usr/share/i18n/charmaps'

build_rootfs() {
    local work tar
    work="$(mktemp -d)"
    trap 'as_root rm -rf "$work"' RETURN
    tar="$work/rootfs.tar"
    log "building $SUITE rootfs with postgresql-15 from $MIRROR"
    if ! command -v mmdebstrap >/dev/null && ! command -v debootstrap >/dev/null; then
        log "installing mmdebstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null ||
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if command -v mmdebstrap >/dev/null; then
        # variant apt = Essential packages + apt; no docs/man/translations.
        # After install, remove what a test fixture never uses: the cluster
        # Debian's postinst creates (the entrypoint makes its own), the LLVM
        # JIT (~150 MiB: libLLVM, libz3, bitcode; the entrypoint sets
        # jit = off), locale sources (initdb uses C.UTF-8), apt lists/caches.
        # shellcheck disable=SC2016 # "$1" in hooks is expanded by mmdebstrap's hook shell
        as_root mmdebstrap --variant=apt --include=postgresql-15 \
            --aptopt='Acquire::Languages "none"' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
            --customize-hook="$STRIP_HOOK" \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
            "$SUITE" "$tar" \
            "deb $MIRROR $SUITE main" \
            "deb $MIRROR $SUITE-updates main" \
            "deb $SEC_MIRROR $SUITE-security main" >&2
    else
        as_root debootstrap --variant=minbase --include=postgresql-15 "$SUITE" "$work/root" "$MIRROR" >&2
        as_root sh -c "$STRIP_HOOK" strip "$work/root"
        as_root rm -rf "$work/root"/var/lib/postgresql/15 "$work/root"/etc/postgresql/15 \
            "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/* "$work/root"/usr/share/doc \
            "$work/root"/usr/share/man "$work/root"/usr/share/locale
        as_root tar -C "$work/root" -cf "$tar" .
    fi
    log "importing rootfs ($(du -h "$tar" | cut -f1)) as $BASE_TAG"
    docker import "$tar" "$BASE_TAG" >/dev/null
}

previous_base=""
if [ "$FORCE" = 1 ] || ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
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
# Drop the image this build replaced, unless something still uses it.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
if [ -n "$previous_base" ] && [ "$previous_base" != "$(docker image inspect -f '{{.Id}}' "$BASE_TAG")" ]; then
    docker image rm "$previous_base" >/dev/null 2>&1 || true
fi

size="$(docker image inspect -f '{{.Size}}' "$TAG")"
done_msg "built $TAG, $((size / 1024 / 1024)) MiB"
