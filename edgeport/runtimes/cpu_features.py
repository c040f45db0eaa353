"""What the CPU can do for int8 inference: ISA extensions read from ``/proc/cpuinfo``.

Why it matters (ONNX Runtime's CPU provider, MLAS, 1.32):

* On x86 the int8 GEMM/conv kernels multiply an unsigned 8-bit activation by a signed 8-bit weight.
  Without VNNI they use ``VPMADDUBSW`` (SSSE3/AVX2/AVX-512BW), which adds two adjacent u8*s8 products
  into a *saturating int16*: ``255 * 127 * 2 = 64770 > 32767``, so a pair can clip. With AVX-512 VNNI
  or AVX-VNNI, ``VPDPBUSD`` accumulates the four products straight into int32 and nothing clips.
* 7-bit weights (``reduce_range``) make the worst pair ``255 * 64 * 2 = 32640 <= 32767``: no clipping.
  8-bit weights whose per-channel scale keeps every same-sign pair within ``|q0| + |q1| <= 128`` do the same at
  nearly full 8-bit precision (``edgeport.quantization.weight_grid``, the default there).
* ARM (NEON ``SMULL``/``SDOT``/``SMMLA``) widens before it adds, so it never saturates.

See :func:`choose_reduce_range` and ``edgeport.exporters.onnx_int8`` for how this is used.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFeatures:
    """A CPU's identity and ISA flags (lower-case, as Linux spells them in /proc/cpuinfo)."""

    model_name: str
    arch: str  # normalised: "x86_64", "x86", "aarch64", "arm", or platform.machine() as is
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_x86(self) -> bool:
        return self.arch in ("x86_64", "x86")

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm")

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def avx512_vnni(self) -> bool:
        return "avx512_vnni" in self.flags

    @property
    def avx_vnni(self) -> bool:
        return "avx_vnni" in self.flags

    @property
    def avx_vnni_int8(self) -> bool:
        """Signed*signed VNNI (VPDPBSSD); MLAS has native S8S8 GEMM kernels only with this."""
        return "avx_vnni_int8" in self.flags

    @property
    def amx_int8(self) -> bool:
        return "amx_int8" in self.flags

    @property
    def vnni(self) -> bool:
        """Any x86 VNNI flavour whose u8*s8 dot product accumulates in int32 (no 16-bit saturation)."""
        return self.avx512_vnni or self.avx_vnni

    @property
    def neon(self) -> bool:
        # Advanced SIMD is mandatory on AArch64; on 32-bit ARM Linux reports it as "neon".
        return self.arch == "aarch64" or "asimd" in self.flags or "neon" in self.flags

    @property
    def dotprod(self) -> bool:
        """ARMv8.2 SDOT/UDOT (Linux flag ``asimddp``)."""
        return "asimddp" in self.flags or "dotprod" in self.flags

    @property
    def i8mm(self) -> bool:
        return "i8mm" in self.flags

    def labels(self) -> list[str]:
        """Human names of the int8-relevant extensions, most basic first."""
        if self.is_x86:
            pairs = [("AVX2", self.avx2), ("AVX-512", self.avx512), ("AVX-512 VNNI", self.avx512_vnni),
                     ("AVX-VNNI", self.avx_vnni), ("AVX-VNNI-INT8", self.avx_vnni_int8), ("AMX-INT8", self.amx_int8)]
        elif self.is_arm:
            pairs = [("NEON", self.neon), ("DOTPROD", self.dotprod), ("I8MM", self.i8mm)]
        else:
            pairs = []
        return [name for name, present in pairs if present]

    def describe(self) -> str:
        """One line, e.g. ``Intel(R) Xeon(R) Processor x86_64 AVX2 AVX-512 AVX-512 VNNI``."""
        parts = [self.model_name or "unknown CPU", self.arch, *self.labels()]
        if self.is_x86 and not self.vnni:
            parts.append("(no VNNI: u8*s8 int8 kernels may saturate)")
        return " ".join(parts)


def normalise_arch(machine: str) -> str:
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if m in ("i386", "i486", "i586", "i686", "x86"):
        return "x86"
    if m in ("aarch64", "arm64", "armv8", "armv8l"):
        return "aarch64"
    if m.startswith("arm"):
        return "arm"
    return m or "unknown"


def parse_cpuinfo(text: str, machine: str) -> CpuFeatures:
    """Build :class:`CpuFeatures` from the text of /proc/cpuinfo (first processor block) and platform.machine()."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields.get("flags") or fields.get("features"):
                break  # end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    flags = frozenset((fields.get("flags") or fields.get("features") or "").lower().split())
    name = fields.get("model name") or fields.get("hardware") or fields.get("cpu model") or ""
    if not name and "cpu implementer" in fields:
        name = f"ARM implementer {fields['cpu implementer']} part {fields.get('cpu part', '?')}"
    return CpuFeatures(model_name=name, arch=normalise_arch(machine), flags=flags)


@functools.lru_cache(maxsize=1)
def detect() -> CpuFeatures:
    """This machine's CPU. Reads /proc/cpuinfo; elsewhere falls back to platform/sysctl (flags may be empty)."""
    machine = platform.machine()
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    if text:
        cpu = parse_cpuinfo(text, machine)
        if cpu.model_name or cpu.flags:
            return cpu
    return _fallback(machine)


def describe(cpu: CpuFeatures | None = None) -> str:
    return (cpu or detect()).describe()


def choose_reduce_range(cpu: CpuFeatures) -> bool:
    """Bound onnx-int8's weights only where the int8 kernels would otherwise saturate: x86 without VNNI. The bound is
    ``edgeport.quantization.weight_grid``'s "int8-pairs" grid (``--onnx-reduce-range pairs``) by default, ORT's
    7-bit ``reduce_range`` with ``--onnx-reduce-range on``.

    Where this applies even though edgeport emits S8S8 QDQ (int8 activations): ONNX Runtime's CPU
    provider does not run int8-activation QDQ convs natively on x86. ``QDQIsInt8Allowed()`` is false off
    ARM, so at session creation ``QDQS8ToU8Transformer`` rewrites every int8 activation Q/DQ pair to
    uint8 (zero point + 128) and the QDQ group fuses to a **U8S8** ``QLinearConv``/``QLinearMatMul``
    (MLAS has no S8S8 x86 kernel except with AVX-VNNI-INT8; its S8S8 fallback is portable C++). So S8S8
    QDQ on a non-VNNI x86 CPU *does* run through ``VPMADDUBSW`` and can saturate:

    * 8-bit weights: worst adjacent pair ``255 * 127 * 2 = 64770``, about 2x the int16 limit 32767;
      a pair clips when both activations are large and the two weights share a sign and are large.
    * 7-bit weights (reduce_range): worst pair ``255 * 64 * 2 = 32640 <= 32767``: provably no clipping.
    * VNNI x86 (``VPDPBUSD``, int32 accumulate) and ARM (widening multiplies / SDOT) never clip.

    Measured (ORT 1.32, S8S8 QDQ per-channel MinMax, BN-recalibrated MobileNetV2-224, 4 held-out images),
    by emulating that kernel on the model's real int8 activations (+128) and weights: with 8-bit weights
    4.6e-4 of all u8*s8 pairs saturate and 1.3 % of conv/gemm outputs contain a clipped pair; the stem
    conv's int32 accumulators then carry 19.6 dB SQNR from saturation alone (other layers 23-26 dB),
    about as bad as the whole int8 rounding error. With 7-bit weights: 0 of 5.6e8 pairs saturate.

    The price of 7-bit weights is one bit of weight precision on every CPU: weight SQNR 45.1 -> 39.2 dB
    (mean over MobileNetV2's 53 layers); end to end on the (non-chaotic) test model 45.5 -> 40.8 dB
    SQNR vs fp32, and 9.1 vs 15.4 dB on ImageNet-trained EfficientNet-Lite0 (mse ranges, no bias correction),
    where the pair-bounded 8-bit grid gives 15.4 dB. Hence only where it buys correctness, and pairs by default.

    ORT's runtime alternative, session option ``session.x64quantprecision=1``, converts weights to u8 and
    runs slower U8U8 kernels; it is keyed on ``MlasPlatformU8S8Overflow()``, which is true on *every*
    AVX2 machine (VNNI or not), so it is not a substitute for knowing the CPU.

    Note the CPU passed here should be the one that will *run* the artifact; passing the export host's
    CPU is only right when the host also validates or deploys it.
    """
    return cpu.is_x86 and not cpu.vnni


def _fallback(machine: str) -> CpuFeatures:
    arch = normalise_arch(machine)
    name = platform.processor() or ""
    flags: set[str] = set()
    if platform.system() == "Darwin":
        brand = _sysctl("machdep.cpu.brand_string")
        name = brand or name
        if arch == "aarch64":
            for key, flag in (("hw.optional.arm.FEAT_DotProd", "asimddp"), ("hw.optional.arm.FEAT_I8MM", "i8mm")):
                if _sysctl(key) == "1":
                    flags.add(flag)
        else:
            leaf7 = (_sysctl("machdep.cpu.leaf7_features") or "").lower().split()
            flags.update(f.replace(".", "_") for f in leaf7)
            flags.update((_sysctl("machdep.cpu.features") or "").lower().split())
            if "avx512vnni" in flags:
                flags.add("avx512_vnni")
    return CpuFeatures(model_name=name, arch=arch, flags=frozenset(flags))


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def describe_host() -> dict:
    """The host as parity/bench records describe it."""
    cpu = detect()
    return {"machine": cpu.arch, "cpu": cpu.describe(), "vnni": cpu.vnni}
