#!/usr/bin/env bash
# Set everything up, then run the default test suite.
#   scripts/test.sh            default suite (CI): includes the quick Flower deployment tests
#   scripts/test.sh --slow     the long suites (big attacks, soak tests, long Flower runs)
#   scripts/test.sh --flower   every Flower deployment test (marker flower; about 15 min)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ "${1:-}" == "--slow" ]]; then
  shift
  exec .venv/bin/python -m pytest -m slow "$@"
fi
if [[ "${1:-}" == "--flower" ]]; then
  shift
  exec .venv/bin/python -m pytest -m flower "$@"
fi
exec .venv/bin/python -m pytest "$@"
