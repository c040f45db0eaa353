"""The one place that lists how int8 targets can quantize: calibration methods, tflite-int8 I/O dtypes, the
onnx-int8 formats, activation types and reduce-range settings, and the ``--deploy`` presets.

The CLI's help and checks, recipe parsing, the exporters and the API all read these tuples; ``QuantOptions``
refuses any other value when it is built, so a bad value fails before capture, never deep inside an export.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from edgeport.errors import BadOption

# activation-range methods (edgeport.quantization.ranges; onnx-int8 also through ORT's calibrators)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")
IO_DTYPES = ("int8", "uint8", "float32")  # tflite-int8 input/output (float32 keeps int8 inside)
ONNX_FORMATS = ("qdq", "qoperator")  # QuantizeLinear/DequantizeLinear around float ops | QLinearConv...
ONNX_ACTIVATIONS = ("s8", "u8")  # int8 | uint8 activations; weights are always int8
REDUCE_RANGE = ("auto", "on", "off")  # 7-bit onnx-int8 weights: from this CPU (cpu_features) | always | never

# --deploy ARCH: the onnx-int8 settings measured cheapest-and-correct on that architecture (docs/arm.md, "ONNX
# int8 on arm64"; MobileNetV2 1.0/224 under qemu, M guest instructions per inference). x86 is the behaviour
# before --deploy existed. Export cannot know the device, so this is the user's documented choice, never guessed.
# * arm64 (dot-product cores, Pi 5 cortex-a76): s8 activations 58.39 vs u8 62.33; QOperator = QDQ in cost
#   (58.39), but QOperator s8 is bit-exact arm64 vs x86 (QDQ s8: 7.3e-3 relative, ORT on x86 runs 25 of its
#   ops in float), so the x86 validation at export is what the device computes. reduce_range changes no
#   count on arm64 and costs 2 dB SQNR: off.
# * arm64-nodot (no SDOT, Pi 4 cortex-a72): u8 activations 117.90 vs s8 127.41 (either format).
DEPLOY_PRESETS: dict[str, dict[str, str]] = {
    "x86": {"onnx_format": "qdq", "onnx_activations": "s8", "onnx_reduce_range": "auto"},
    "arm64": {"onnx_format": "qoperator", "onnx_activations": "s8", "onnx_reduce_range": "off"},
    "arm64-nodot": {"onnx_format": "qoperator", "onnx_activations": "u8", "onnx_reduce_range": "off"},
}

# QuantOptions field (= recipe [quantize] key) -> (allowed values, the CLI flag that sets it): what every
# consumer must accept
CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "method": (CALIBRATION_METHODS, "--calib-method"),
    "io_dtype": (IO_DTYPES, "--io-dtype"),
    "onnx_format": (ONNX_FORMATS, "--onnx-format"),
    "onnx_activations": (ONNX_ACTIVATIONS, "--onnx-activations"),
    "onnx_reduce_range": (REDUCE_RANGE, "--onnx-reduce-range"),
}
NOUNS = {"method": "calibration method", "io_dtype": "tflite-int8 io dtype", "onnx_format": "onnx-int8 format",
         "onnx_activations": "onnx-int8 activation type", "onnx_reduce_range": "onnx-int8 reduce-range setting",
         "deploy": "deploy architecture"}


def check_choice(value: str, allowed: tuple[str, ...] | dict, flag: str, noun: str | None = None) -> str:
    """``value`` if it is one of ``allowed``; otherwise a usage error naming what it is, the choices and the flag."""
    if value not in allowed:
        raise BadOption(f"unknown {noun or flag} {value!r}", f"choose from {', '.join(allowed)} ({flag})")
    return value


def help_list(allowed: tuple[str, ...] | dict) -> str:
    """``"a, b or c"`` for option help texts."""
    names = list(allowed)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class QuantOptions:
    """How int8 targets quantize. Weights are always per-channel int8."""

    method: str = "minmax"  # one of CALIBRATION_METHODS
    percentile: float = 99.99
    io_dtype: str = "int8"  # tflite-int8 input/output, one of IO_DTYPES
    float_fallback: tuple[str, ...] = ()  # layer names the user allows to stay float
    # ops the converter or runtime cannot run in int8 (GELU's Erf, an int8 DIV by a zero-quantized denominator)
    # are kept float automatically and reported; no_float makes any float op in an int8 file a failure (exit 3)
    no_float: bool = False
    # onnx-int8 only (edgeport.exporters.onnx_int8; DEPLOY_PRESETS names the measured best per architecture)
    onnx_format: str = "qdq"
    onnx_activations: str = "s8"
    onnx_reduce_range: str = "auto"
    # edgeport.quantization.equalization on the fused graph before export (all int8 targets): DFQ cross-layer
    # equalization, empirical bias correction (needs calibration data)
    cle: bool = False
    bias_correction: bool = False
    # edgeport.quantization.adaround: learned rounding of conv/linear weights onto the converters' int8 grid
    # (needs calibration data); with bias_correction, the correction is made inside AdaRound's walk
    adaround: bool = False

    @property
    def needs_calibration(self) -> bool:
        """Graph transforms that measure on calibration data (any int8 target needs it anyway)."""
        return self.bias_correction or self.adaround

    @property
    def transforms_graph(self) -> bool:
        """Whether the fused graph changes before export (edgeport.pipeline.export_flow.equalize_prepared)."""
        return self.cle or self.bias_correction or self.adaround

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in CHOICES:
                allowed, flag = CHOICES[f.name]
                check_choice(getattr(self, f.name), allowed, flag, NOUNS[f.name])
        if not 0 < self.percentile <= 100:
            raise BadOption(f"percentile {self.percentile} is not in (0, 100]", "e.g. 99.99")
        if isinstance(self.float_fallback, (str, list)):
            object.__setattr__(self, "float_fallback", (self.float_fallback,) if isinstance(self.float_fallback, str)
                               else tuple(self.float_fallback))


def deploy_options(quant: QuantOptions, deploy: str | None, **explicit: str | None) -> QuantOptions:
    """``quant`` with the onnx-int8 settings of DEPLOY_PRESETS[deploy] (None: unchanged), then the ``explicit``
    ones that are not None (onnx_format=, onnx_activations=, onnx_reduce_range=): what the user names wins."""
    if deploy is not None:
        check_choice(deploy, DEPLOY_PRESETS, "--deploy", NOUNS["deploy"])
        quant = replace(quant, **DEPLOY_PRESETS[deploy])
    given = {k: v for k, v in explicit.items() if v is not None}
    return replace(quant, **given) if given else quant
