#!/usr/bin/env bash
# The whole test suite, as the README's Quickstart runs it: builds the wheel that would ship,
# installs it with the test dependencies into .venv, starts the database servers the tests use
# (scripts/services.sh: PostgreSQL, where installed; stopped again at the end if this script
# started them), then runs the Rust and Python tests against every store.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k replay`).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip maturin
rm -rf dist
.venv/bin/maturin build --release --quiet --out dist
wheel=$(ls dist/mainspring-*.whl)
.venv/bin/pip install --quiet --force-reinstall --no-deps "$wheel"
.venv/bin/pip install --quiet "${wheel}[test]"

if ! bash scripts/services.sh status; then
    trap 'bash scripts/services.sh stop' EXIT
fi
bash scripts/services.sh start

cargo test --workspace --quiet
.venv/bin/pytest "$@"
