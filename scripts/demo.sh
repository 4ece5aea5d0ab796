#!/usr/bin/env bash
# Set everything up, then run the main job on its embedded defaults: federated training
# across 20 simulated clients with SecAgg+ masking and DP-SGD, plus the plaintext
# baseline; the report (results.json, ledgers, plots) lands in demo-report/.
# Extra arguments go to `secagg demo` (e.g. --quick, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="demo-report"
if [[ -e "$out" ]]; then out="demo-report-$(date +%Y%m%d-%H%M%S)"; fi
exec .venv/bin/secagg demo --out "$out" "$@"
