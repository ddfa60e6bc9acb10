#!/usr/bin/env bash
# Create .venv and install Trunkline into it (editable), plus the Debian packages a mode needs.
# Usage: scripts/bootstrap.sh [serve|test]. Fast when everything is already there.
set -euo pipefail
mode="${1:-serve}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

need_debs=()
have() { command -v "$1" >/dev/null 2>&1; }
python3 -c 'import ensurepip, venv' 2>/dev/null || need_debs+=(python3-venv python3-pip)
if [ "$mode" = test ]; then
    have sipp || need_debs+=(sip-tester)
    have espeak-ng || need_debs+=(espeak-ng)
    have sox || need_debs+=(sox)
    have git || need_debs+=(git)
fi
if [ "${#need_debs[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: need Debian packages ${need_debs[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "bootstrap: installing Debian packages: ${need_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
fi

venv="$root/.venv"
extras=""
[ "$mode" = test ] && extras="[test]"
stamp="$venv/.trunkline-stamp-$mode"
digest="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "bootstrap: installing Python packages ($mode)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"
    echo "$digest" > "$stamp"
fi

# A link tree that shows the source folders under their import names, for mypy (which cannot
# follow setuptools' editable-install import hook).
links="$venv/linktree/trunkline"
mkdir -p "$links"
ln -sfn "$root/trunkline/__init__.py" "$links/__init__.py"
ln -sfn "$root/trunkline/cli.py" "$links/cli.py"
for pkg in gateway media codecs; do ln -sfn "$root/$pkg" "$links/$pkg"; done
