"""``--device docker-arm64``: run an artifact in an arm64 container.

The image is edgeport's arm64 rootfs (edgeport.benchmark.arm_rootfs) brought in with ``docker import`` (no
registry is reachable, nothing is pulled) plus device_runner.py, built from docker/Dockerfile.arm64 and
tagged by a hash of the runner and the Dockerfile, so it is built once and rebuilt when either changes.

On an arm64 engine the container runs natively. On an x86 engine the arm64 python needs emulation: when the
kernel has a binfmt_misc entry for aarch64 (qemu-user-static registered) the engine uses it; otherwise the
host's static ``qemu-aarch64-static`` is bind-mounted and made the entrypoint, so no kernel setup is
needed. Either way the timings are emulated wall time, never device latency (``DeviceRun.emulated``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeport.benchmark.devices import RUNNER_SCRIPT, STAGED_RUNTIME, DeviceRun, DeviceSpec
from edgeport.errors import RuntimeMissing, UserError
from edgeport.formats import format_of

DOCKERFILE = Path(__file__).with_name("Dockerfile.arm64")  # package data: the wheel ships it
IMAGE = "edgeport/arm64-runner"
BASE_IMAGE = "edgeport/arm64-base"
QEMU_STATIC = "/usr/bin/qemu-aarch64-static"
BINFMT_AARCH64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
NO_ENGINE_HINT = ("install and start one: sudo apt-get install docker.io && sudo dockerd & (or systemctl start docker); "
                  "--device qemu-pi4 runs the same arm64 userland without an engine")
CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}


def _native() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


class DockerArm64Device:
    name = "docker-arm64"

    def __init__(self, spec: DeviceSpec, rootfs: Path | None = None, remote_python: str | None = None,
                 cpu: str = "cortex-a72", warmup: int = 5, runs: int = 50, xnnpack: bool = True, docker: str = "docker"):
        self.spec = spec
        self.rootfs = rootfs
        from edgeport.benchmark.arm_rootfs import GUEST_PYTHON, GUEST_SITE

        self.python = remote_python or f"/usr/bin/python{GUEST_PYTHON}"
        self.site = GUEST_SITE  # where the rootfs keeps the aarch64 wheels (numpy, onnxruntime, ai-edge-litert)
        self.cpu = cpu
        self.warmup, self.runs, self.xnnpack = warmup, runs, xnnpack
        self.docker = docker
        self.emulated = not _native()

    # -- engine ----------------------------------------------------------------------------------------

    def _call(self, args: list[str], timeout: float, stdin=None, what: str = "docker") -> subprocess.CompletedProcess:
        if shutil.which(self.docker) is None:
            raise RuntimeMissing("docker is not installed, so --device docker-arm64 has no engine", NO_ENGINE_HINT)
        try:
            return subprocess.run([self.docker, *args], capture_output=True, timeout=timeout, stdin=stdin)
        except subprocess.TimeoutExpired:
            raise RuntimeMissing(f"{what} did not finish within {timeout:.0f} s", NO_ENGINE_HINT) from None

    def check_engine(self) -> str:
        """The engine's server version; a RuntimeMissing (exit 4) when `docker info` fails."""
        res = self._call(["info", "--format", "{{.ServerVersion}}"], timeout=20, what="`docker info`")
        out = res.stdout.decode(errors="replace").strip()
        if res.returncode != 0 or not out or out == "<no value>":
            reason = (res.stderr.decode(errors="replace").strip().splitlines() or ["no server answered"])[-1][:160]
            raise RuntimeMissing(f"no Docker engine: `docker info` failed ({reason})", NO_ENGINE_HINT)
        return out

    def preflight(self) -> None:
        self.check_engine()

    # -- image -----------------------------------------------------------------------------------------

    def image_tag(self) -> str:
        if not DOCKERFILE.is_file():
            raise RuntimeMissing(f"{DOCKERFILE} is missing", "--device docker-arm64 needs edgeport's source checkout")
        h = hashlib.sha256(DOCKERFILE.read_bytes() + RUNNER_SCRIPT.read_bytes() + self.python.encode())
        return f"{IMAGE}:{h.hexdigest()[:12]}"

    def ensure_image(self) -> str:
        """The runner image's tag, built from the rootfs the first time (docker import + docker build)."""
        tag = self.image_tag()
        if self._call(["image", "inspect", tag], timeout=30).returncode == 0:
            return tag
        rootfs = self._rootfs()
        base = f"{BASE_IMAGE}:{tag.split(':')[1]}"
        # tar streams the rootfs straight into `docker import`; numeric owners keep root-owned files root's
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = self._call(["import", "--platform", "linux/arm64", "-", base], timeout=1800, stdin=tar.stdout,
                                  what="docker import")
        finally:
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise UserError(f"docker import of {rootfs} failed: {imported.stderr.decode(errors='replace').strip()[-200:]}")
        with tempfile.TemporaryDirectory(prefix="edgeport-docker-") as ctx:
            shutil.copy(RUNNER_SCRIPT, Path(ctx) / "device_runner.py")
            built = self._call(["build", "-q", "-f", str(DOCKERFILE), "--build-arg", f"BASE={base}",
                                "--build-arg", f"PYTHON={self.python}", "--build-arg", f"SITE={self.site}",
                                "-t", tag, ctx], timeout=1800, what="docker build")
        if built.returncode != 0:
            raise UserError(f"docker build of {DOCKERFILE.name} failed: {built.stderr.decode(errors='replace').strip()[-200:]}")
        return tag

    def _rootfs(self) -> Path:
        if self.rootfs is not None:
            return Path(self.rootfs)
        from edgeport.benchmark import arm_rootfs  # the arm64 userland the QEMU devices use (built once, cached)

        return Path(arm_rootfs.ensure().path)

    # -- run -------------------------------------------------------------------------------------------

    def command(self, tag: str, work: Path, artifact_name: str, threads: int) -> list[str]:
        """`docker run` arguments for one artifact in ``work`` (mounted at /work); a native runtime staged in
        ``work`` (FileFormat.device_runtime) is passed to the runner."""
        # no --platform here: an engine that stored the imported image as its own platform (20.10 ignores
        # `import --platform`) would otherwise try to pull an arm64 variant from a registry
        args = ["run", "--rm", "--network", "none", "-v", f"{work}:/work"]
        runner = [self.python, "/opt/edgeport/device_runner.py"]
        if self.emulated:
            # onnxruntime segfaults and LiteRT fails on the host's x86 /proc/cpuinfo: show them the emulated core's
            from edgeport.benchmark.qemu import cpuinfo_text

            (work / "cpuinfo").write_text(cpuinfo_text(self.cpu, os.cpu_count() or 1))
            args += ["-e", f"QEMU_CPU={self.cpu}", "-v", f"{work / 'cpuinfo'}:/proc/cpuinfo:ro"]
            if not BINFMT_AARCH64.exists():  # no kernel registration: run python through the host's static qemu
                if not Path(QEMU_STATIC).is_file():
                    raise RuntimeMissing(f"{QEMU_STATIC} is missing and binfmt_misc has no aarch64 entry",
                                         "sudo apt-get install qemu-user-static")
                args += ["-v", f"{QEMU_STATIC}:{QEMU_STATIC}:ro", "--entrypoint", QEMU_STATIC]
        args += [tag, *runner, "--artifact", f"/work/{artifact_name}", "--inputs", "/work/inputs.npy",
                 "--threads", str(int(threads)), "--warmup", str(int(self.warmup)), "--runs", str(int(self.runs)),
                 "--out", "/work/result.json", "--outputs-npy", "/work/outputs.npy"]
        if not self.xnnpack:
            args.append("--no-xnnpack")
        if (work / STAGED_RUNTIME).is_dir():
            args += ["--pte-runtime", f"/work/{STAGED_RUNTIME}"]
        return args

    def run(self, artifact: Path, inputs: np.ndarray, threads: int) -> DeviceRun:
        artifact = Path(artifact)
        server = self.check_engine()
        native = format_of(artifact).device_runtime(print)  # e.g. ExecuTorch's aarch64 C++ runtime for a .pte
        tag = self.ensure_image()
        with tempfile.TemporaryDirectory(prefix="edgeport-docker-run-") as tmp:
            work = Path(tmp)
            work.chmod(0o777)  # the container's user may differ from ours
            shutil.copy(artifact, work / artifact.name)
            if native is not None:
                shutil.copytree(native, work / STAGED_RUNTIME)
            np.save(work / "inputs.npy", np.ascontiguousarray(inputs, dtype=np.float32))
            ran = self._call(self.command(tag, work, artifact.name, threads), timeout=3600, what="docker run")
            if ran.returncode != 0 or not (work / "result.json").is_file():
                tail = " | ".join(ran.stderr.decode(errors="replace").strip().splitlines()[-2:])[:300]
                raise UserError(f"device_runner.py failed in {tag} (exit {ran.returncode}): {tail}")
            result = json.loads((work / "result.json").read_text())
            outputs = np.load(work / "outputs.npy")
        extra = {"image": tag, "engine": server}
        if self.emulated:
            extra["qemu_cpu"] = f"{self.cpu} ({CPUS.get(self.cpu, '?')})"
            extra["emulation"] = "binfmt_misc" if BINFMT_AARCH64.exists() else f"{QEMU_STATIC} entrypoint"
        return DeviceRun.from_result(result, device=self.name, outputs=outputs, emulated=self.emulated, **extra)


def make_device(spec: DeviceSpec, **options) -> DockerArm64Device:
    return DockerArm64Device(spec, **options)
