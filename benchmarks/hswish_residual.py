"""What an h-swish whose output feeds a residual ADD costs in int8 on a Pi, edgeport's form vs HARD_SWISH:

    .venv/bin/python -m benchmarks.hswish_residual [--devices qemu-pi5,qemu-pi4] [--size 112] [--channels 32]

When an h-swish output feeds both a conv and a residual ADD, the pending 1/6 of edgeport's ReLU6 form
(x * relu6(x + 3), see edgeport/graph/rewrites.py) cannot move into a following conv on the ADD's path; edgeport
scales the ADD's other side by 6 at the conv it comes from (its other readers take the 1/6 in their weights), so
every op stays in XNNPACK in int8 and no op is added. The alternative is TFLite's own int8 HARD_SWISH, which
XNNPACK does not take: it runs in LiteRT's builtin kernels between partitions (with ``--no-float``), or, by
default, edgeport keeps it float inside the XNNPACK partition (float islands, edgeport/exporters/tflite.py). This
script exports tests/fixtures/third_party.HardSwishResidualNet-style blocks the three ways (the last two with the
rewrite switched off) and measures each file with ``edgeport.bench``: guest instructions per inference under
qemu-user (the repeatable cost; cortex-a72 = qemu-pi4, cortex-a76 = qemu-pi5), 1 thread, and this machine's p50
(noisy on shared cores). Results: benchmarks/results/hswish_residual.json and stdout.

Measured (112x112, 32 channels, 4 units; instructions per inference, qemu-pi5 / qemu-pi4): edgeport's int8 form
25.00M / 72.37M in one partition (28 int8 ops), int8 HARD_SWISH in LiteRT's kernels 25.57M / 72.94M
(5 partitions), float HARD_SWISH island 25.00M / 72.37M (31 instructions fewer). edgeport's form costs 0.978x the
builtin HARD_SWISH on cortex-a76 and is fully int8. Before the other side was scaled at its conv, a MUL by 6 per
residual made it 27.07M / 74.44M (1.06x HARD_SWISH).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import edgeport
from edgeport.formats.delegation import tflite_delegation
from edgeport.formats.int8_coverage import coverage_of

OUT = Path(__file__).parent / "results" / "hswish_residual.json"


class Block(nn.Module):
    """Stem, then ``depth`` units where an h-swish output feeds a conv and a residual ADD (the failure class)."""

    def __init__(self, channels: int, depth: int = 4, num_classes: int = 10):
        super().__init__()

        def conv_bn(i, o, stride=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o))

        self.stem = conv_bn(3, channels, 2)
        self.convs = nn.ModuleList(conv_bn(channels, channels) for _ in range(2 * depth))
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        s = F.relu(self.stem(x))
        for a, b in zip(self.convs[::2], self.convs[1::2]):
            h = F.hardswish(a(s))
            s = F.relu(b(h)) + h + s
        return self.head(s.mean((2, 3)))


def export(model: nn.Module, size: int, out: Path, rewrite: bool, no_float: bool = False) -> Path:
    out.mkdir(parents=True)
    calib = out / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((64, 3, size, size), dtype=np.float32))
    patch = (mock.patch("edgeport.graph.rewrites.relu6_hard_activations", lambda gm: []) if not rewrite
             else contextlib.nullcontext())
    with patch:
        result = edgeport.export(model, ["tflite-int8"], out=out, input_shape=(1, 3, size, size), calib=calib,
                                 calib_samples=64, validate=False, name="hswish_residual",
                                 quant=edgeport.QuantOptions(no_float=no_float))
    return Path(result.artifacts[0].path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="qemu-pi5,qemu-pi4")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--channels", type=int, default=32)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = Block(args.channels).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {"edgeport: x * relu6(x + 3) in int8, 1/6 moved": export(model, args.size, Path(tmp) / "a", True),
                 "int8 HARD_SWISH (rewrite off, --no-float)": export(model, args.size, Path(tmp) / "b", False, True),
                 "float HARD_SWISH island (rewrite off)": export(model, args.size, Path(tmp) / "c", False)}
        for form, path in files.items():
            d = tflite_delegation(path)
            row = {"form": form, "partitions": d.partitions, "builtin": dict(d.slow), "coverage": coverage_of(path).line(),
                   "local_p50_ms": round(edgeport.bench(path, budget_s=3.0)[0].p50_ms, 3)}
            for device in filter(None, args.devices.split(",")):
                (r,) = edgeport.bench(path, device=device)
                row[device] = r.run.instructions_per_inference
            rows.append(row)
            print(json.dumps(row))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"size": args.size, "channels": args.channels, "threads": 1, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
