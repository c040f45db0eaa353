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
# The defaults, by measurement (docs/real-weights.md, "Defaults"): on the three ImageNet-trained networks, mse ranges
# with bias correction beat every other method with or without it, in both int8 targets (EfficientNet-Lite0
# tflite-int8 14.6 dB minmax -> 21.1 dB; MobileNetV2 embedding 8.8 -> 14.1 dB; SqueezeNet 30.5 -> 32.9 dB), and the
# trained Fashion-MNIST models stay within 0.3 point of float with them.
DEFAULT_METHOD = "mse"
IO_DTYPES = ("int8", "uint8", "float32")  # tflite-/executorch-int8 input/output (float32 keeps int8 inside)
ONNX_FORMATS = ("qdq", "qoperator")  # QuantizeLinear/DequantizeLinear around float ops | QLinearConv...
ONNX_ACTIVATIONS = ("s8", "u8")  # int8 | uint8 activations; weights are always int8
# onnx-int8's weight grid (edgeport.quantization.weight_grid) by --onnx-reduce-range: 7-bit weights everywhere (ORT's
# reduce_range) | plain 8-bit | 8-bit with each channel's scale bounding the pairs x86 kernels without VNNI add in
# int16 (depthwise convs plain 8-bit). "auto" reads this CPU: "pairs" on x86 without VNNI, else "off".
REDUCE_RANGE_GRIDS = {"on": "int7", "off": "int8", "pairs": "int8-pairs"}
REDUCE_RANGE = ("auto", *REDUCE_RANGE_GRIDS)
# onnx-int8 h-swish / hard-sigmoid: ORT's HardSigmoid and Mul in float between DQ/Q (no QLinear kernel exists for
# them) | x * relu6(x + 3) with the 1/6 folded into the next conv, every op an integer kernel
# (edgeport.graph.rewrites.for_ort_int8; measured below and in docs/quantization.md)
ONNX_HARD_ACTIVATIONS = ("float", "int8")

# --deploy ARCH: the onnx-int8 settings measured cheapest-and-correct on that architecture. Export cannot know the
# device, so this is the user's documented choice; only "x86" reads this machine's CPU (resolve_deploy).
# * x86-vnni (AVX-512 VNNI / AVX-VNNI, AMX): QDQ with uint8 activations is the one layout ORT's CPU provider fuses
#   whole on x86: int8 activations become uint8 only at a QuantizeLinear with one consumer (QDQS8ToU8), so S8 QDQ
#   left every residual input in float (MobileNetV2 39/64 integer kernels), and S8 QOperator runs MLAS's portable
#   S8S8 kernels (4-7x fp32). h-swish in int8 (ORT has no QLinear HardSigmoid: 50 float ops in MobileNetV3-Large).
#   8-bit weights: VPDPBUSD accumulates in int32, nothing saturates. Numbers: docs/quantization.md, "onnx-int8 on x86".
# * x86-avx2 (x86 without VNNI: AVX2, or AVX-512 without VNNI): the same layout with pair-bounded 8-bit weights,
#   because VPMADDUBSW's int16 pair sums saturate with plain 8-bit weights (edgeport.runtimes.cpu_features.
#   choose_reduce_range; edgeport.quantization.weight_grid: same kernels as 7-bit weights, full 8-bit accuracy).
# * arm64 (dot-product cores, Pi 5 cortex-a76): s8 activations 58.39 vs u8 62.33 (M guest instructions per
#   inference, MobileNetV2 1.0/224 under qemu; docs/arm.md, "ONNX int8 on arm64"); QOperator = QDQ in cost
#   (58.39), but QOperator s8 is bit-exact arm64 vs x86 (QDQ s8: 7.3e-3 relative, ORT on x86 runs 25 of its
#   ops in float), so the x86 validation at export is what the device computes. reduce_range changes no
#   count on arm64 and costs 2 dB SQNR: off.
# * arm64-nodot (no SDOT, Pi 4 cortex-a72): u8 activations 117.90 vs s8 127.41 (either format).
DEPLOY_PRESETS: dict[str, dict[str, str]] = {
    "x86-vnni": {"onnx_format": "qdq", "onnx_activations": "u8", "onnx_reduce_range": "off", "onnx_hard_activations": "int8"},
    "x86-avx2": {"onnx_format": "qdq", "onnx_activations": "u8", "onnx_reduce_range": "pairs", "onnx_hard_activations": "int8"},
    "arm64": {"onnx_format": "qoperator", "onnx_activations": "s8", "onnx_reduce_range": "off"},
    "arm64-nodot": {"onnx_format": "qoperator", "onnx_activations": "u8", "onnx_reduce_range": "off"},
}
HOST_DEPLOY = "x86"  # --deploy x86: x86-vnni or x86-avx2, whichever this machine's CPU is (resolve_deploy)
DEPLOY_CHOICES: tuple[str, ...] = (HOST_DEPLOY, *DEPLOY_PRESETS)


def resolve_deploy(deploy: str | None, cpu=None) -> str | None:
    """The DEPLOY_PRESETS key ``deploy`` names: itself, or for "x86" the preset of ``cpu`` (default: this machine's)."""
    if deploy != HOST_DEPLOY:
        return deploy
    from edgeport.runtimes import cpu_features

    cpu = cpu or cpu_features.detect()
    if not cpu.is_x86:
        raise BadOption(f"--deploy x86 reads this machine's CPU, and it is {cpu.arch}",
                        "name the x86 preset of the device instead: x86-vnni or x86-avx2")
    return "x86-vnni" if cpu.vnni else "x86-avx2"


# QuantOptions field (= recipe [quantize] key) -> (allowed values, the CLI flag that sets it): what every
# consumer must accept
CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "method": (CALIBRATION_METHODS, "--calib-method"),
    "io_dtype": (IO_DTYPES, "--io-dtype"),
    "onnx_format": (ONNX_FORMATS, "--onnx-format"),
    "onnx_activations": (ONNX_ACTIVATIONS, "--onnx-activations"),
    "onnx_reduce_range": (REDUCE_RANGE, "--onnx-reduce-range"),
    "onnx_hard_activations": (ONNX_HARD_ACTIVATIONS, "--onnx-hard-activations"),
}
NOUNS = {"method": "calibration method", "io_dtype": "int8 input/output dtype", "onnx_format": "onnx-int8 format",
         "onnx_activations": "onnx-int8 activation type", "onnx_reduce_range": "onnx-int8 reduce-range setting",
         "onnx_hard_activations": "onnx-int8 h-swish setting",
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

    method: str = DEFAULT_METHOD  # one of CALIBRATION_METHODS
    percentile: float = 99.99
    io_dtype: str = "int8"  # tflite-int8 / executorch-int8 input/output, one of IO_DTYPES
    float_fallback: tuple[str, ...] = ()  # layer names the user allows to stay float
    # ops the converter or runtime cannot run in int8 (GELU's Erf, an int8 DIV by a zero-quantized denominator)
    # are kept float automatically and reported; no_float makes any float op in an int8 file a failure (exit 3)
    no_float: bool = False
    # onnx-int8 only (edgeport.exporters.onnx_int8; DEPLOY_PRESETS names the measured best per architecture)
    onnx_format: str = "qdq"
    onnx_activations: str = "s8"
    onnx_reduce_range: str = "auto"
    onnx_hard_activations: str = "float"
    # edgeport.quantization.equalization on the int8 targets' copy of the fused graph: DFQ cross-layer
    # equalization, empirical bias correction (needs calibration data). bias_correction None ("auto", the default):
    # on when the calibration data is real (not synthetic noise, whose mean says nothing), see with_data()
    cle: bool = False
    bias_correction: bool | None = None
    # edgeport.quantization.adaround: learned rounding of conv/linear weights onto the converters' int8 grid
    # (needs calibration data); with bias_correction, the correction is made inside AdaRound's walk
    adaround: bool = False
    # edgeport.quantization.range_search: narrow the int8 ranges of the activations the output is most sensitive to,
    # where a simulation of the whole int8 network on the calibration data says it lowers the output error.
    # Opt-in: on real weights the simulated gain (+0.2 to +1.1 dB) did not show in the files yet (docs/quantization.md)
    range_search: bool = False

    @property
    def needs_calibration(self) -> bool:
        """Graph transforms the user asked for that measure on calibration data (any int8 target needs it anyway)."""
        return self.bias_correction is True or self.adaround or self.range_search

    @property
    def transforms_graph(self) -> bool:
        """Whether the int8 targets' graph changes before export (edgeport.pipeline.export_flow.equalize_prepared);
        resolve the automatic bias correction with with_data() first."""
        return self.cle or bool(self.bias_correction) or self.adaround

    def with_data(self, real_calibration: bool) -> QuantOptions:
        """These options with the automatic choices made for the calibration data at hand: bias correction (None)
        is on when the data is real and off for synthetic noise or none."""
        if self.bias_correction is not None:
            return self
        return replace(self, bias_correction=real_calibration)

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
    """``quant`` with the onnx-int8 settings of DEPLOY_PRESETS[deploy] (None: unchanged; "x86": this CPU's
    preset, see resolve_deploy), then the ``explicit`` ones that are not None (onnx_format=, onnx_activations=,
    onnx_reduce_range=, onnx_hard_activations=): what the user names wins."""
    if deploy is not None:
        check_choice(deploy, DEPLOY_CHOICES, "--deploy", NOUNS["deploy"])
        quant = replace(quant, **DEPLOY_PRESETS[resolve_deploy(deploy)])
    given = {k: v for k, v in explicit.items() if v is not None}
    return replace(quant, **given) if given else quant
