#!/usr/bin/env bash
# Installs what the third-party sweep needs, outside the project's environment (nothing downloads at run time):
#   .cache/sweep-site    torchvision 0.28.0 + timm 1.0.31, `pip install --no-deps --target` (never into .venv:
#                        PyPI's torchvision is CUDA-built; thirdparty_import.py explains the import shim)
#   .cache/sweep-photos  real photos for BatchNorm re-estimation and calibration, taken from the scikit-image
#                        wheel's skimage/data (downloaded with pip, read as a zip, never installed) and
#                        matplotlib's sample data (photos.py lists them)
# Usage: bash benchmarks/third_party/setup.sh   (from the repository root; PY=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
mkdir -p .cache
if [ ! -d .cache/sweep-site/timm ] || [ ! -d .cache/sweep-site/torchvision ]; then
  "$PY" -m pip install --quiet --no-deps --target .cache/sweep-site torchvision==0.28.0 timm==1.0.31
fi
if [ ! -f .cache/sweep-photos/.done ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" scikit-image==0.26.0
  "$PY" -m benchmarks.third_party.photos "$tmp"/scikit_image-*.whl .cache/sweep-photos
  touch .cache/sweep-photos/.done
fi
echo "sweep ready: .cache/sweep-site, .cache/sweep-photos ($(ls .cache/sweep-photos | wc -l) images)"
