#!/usr/bin/env bash
# Set everything up, then run the main job on its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/secagg --help
.venv/bin/secagg selfcheck
