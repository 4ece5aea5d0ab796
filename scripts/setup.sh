#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with every extra installed.
# Idempotent: a second run only compares a stamp and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SECAGG_VENV:-.venv}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
if [[ -z "$PY" ]]; then echo "setup: no python3 found; install Python 3.11" >&2; exit 1; fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "setup: $PY is $("$PY" -V 2>&1); Python >= 3.11 is required" >&2; exit 1; }

stamp_src="$(cat pyproject.toml constraints.txt | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [[ -x "$VENV/bin/python" && -f "$VENV/.secagg-stamp" && "$(cat "$VENV/.secagg-stamp")" == "$stamp_src" ]]; then
  exit 0
fi

echo "setup: creating $VENV and installing secagg[all,dev] (first run takes about a minute)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
log="$VENV/.secagg-install.log"
# constraints.txt pins torch==2.13.0 (CPU build) and every other package to versions tested together.
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check \
       -c constraints.txt -e ".[all,dev]" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "setup: pip install failed; full log in $log" >&2
  exit 1
fi
echo "$stamp_src" > "$VENV/.secagg-stamp"
echo "setup: done" >&2
