#!/usr/bin/env bash
# Sets up everything on a fresh Debian machine: apt packages, the local control plane (built from
# Debian's kubernetes source package, cached under ~/.cache/ooto), helm/kubectl, and the venv.
# Rerunning it is cheap: every step skips work that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ooto/testing/install-binaries.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
echo "setup done: .venv/bin/ooto is ready"
