#!/usr/bin/env bash
# Create .venv and install edgeport with its pinned stack. Needs only Python 3.11 + pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch alone and first: 'torch==2.13.0' resolves to the machine's CPU build (a bare 'torch' could pull CUDA).
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/edgeport --version
