"""Import torchvision and timm from the sweep's own site folder (``benchmarks/third_party/setup.sh`` installs
them into ``.cache/sweep-site`` with ``--no-deps``; they never go into the project's environment).

Why the shim: PyPI's torchvision 0.28.0 wheel is built against the CUDA torch. With our CPU torch its C
extension (``torchvision/_C.so``) fails to load, and ``torchvision._meta_registrations`` then calls
``register_fake("torchvision::nms")`` unconditionally, which raises because the op was never registered, so
``import torchvision`` fails. The architectures the sweep builds need none of those ops (nms, roi_align,
deform_conv, ...). So, only while torchvision is imported:
- ``torch.ops.load_library`` raises OSError for torchvision's libraries, which torchvision already handles as
  "no C ops" (``torchvision.extension._has_ops()`` is False), and
- ``torchvision._meta_registrations`` is pre-seeded in ``sys.modules`` with an empty module, so the fake-kernel
  registrations for the missing ops never run.
Nothing is downloaded: every model is built with random weights (``pretrained=False``).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

SITE = Path(__file__).resolve().parents[2] / ".cache" / "sweep-site"


def import_vision():
    """(torchvision, timm), imported from SITE with the shim above; SystemExit naming setup.sh if absent."""
    if not (SITE / "torchvision").is_dir() or not (SITE / "timm").is_dir():
        raise SystemExit(f"torchvision/timm not found in {SITE}: run `bash benchmarks/third_party/setup.sh`")
    if str(SITE) not in sys.path:
        sys.path.append(str(SITE))  # appended: torch, numpy, ... still come from the project's environment
    import torch

    original = torch.ops.load_library

    def refuse_torchvision(path, *args, **kwargs):
        if "torchvision" in str(path):
            raise OSError(f"sweep: torchvision C ops not loaded ({path}): CUDA-built wheel, CPU torch")
        return original(path, *args, **kwargs)

    torch.ops.load_library = refuse_torchvision
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
    finally:
        torch.ops.load_library = original
    import timm

    return torchvision, timm
