#!/usr/bin/env bash
# Set everything up, then run the default test suite (long suites: scripts/test.sh --slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ "${1:-}" == "--slow" ]]; then
  shift
  exec .venv/bin/python -m pytest -m slow "$@"
fi
exec .venv/bin/python -m pytest "$@"
