#!/usr/bin/env bash
# The project's checks: lint, format, types, layer contracts, then every test (unit and
# integration against the real local control plane). Pass pytest arguments to narrow it down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export OOTO_REQUIRE_CLUSTER="${OOTO_REQUIRE_CLUSTER:-1}"

ruff check ooto actors tests
ruff format --check ooto actors tests
mypy --strict ooto actors
lint-imports
# pytest exits 5 when it ran no test; with `set -e` that fails the run, as it should.
python -m pytest "$@"
