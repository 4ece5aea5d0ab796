#!/usr/bin/env bash
# Set everything up, then run the demo on Flower's deployment engine: a SuperLink and
# N SuperNodes on loopback (real processes), the example app examples/flower-app
# (SecAgg+ secure aggregation, DP-SGD on every client), the per-round table, and every
# process stopped at the end (also on Ctrl-C). The report lands in flower-demo-report/.
# Extra arguments go to `secagg flower-demo` (e.g. --nodes 4 --rounds 3 --setting hbc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="flower-demo-report"
if [[ -e "$out" ]]; then out="flower-demo-report-$(date +%Y%m%d-%H%M%S)"; fi
exec .venv/bin/secagg flower-demo --out "$out" "$@"
