"""``--device ssh://user@host[:port]``: run an artifact on a real board over SSH.

The artifact, the inputs (.npy) and device_runner.py are copied to a fresh temporary directory on the device
with the system ``scp``; the runner is started with the device's own Python; result.json and the outputs
are copied back and the directory is removed. The timings are the board's own (not emulated).

The system OpenSSH client is used on purpose instead of a Python SSH library: it honours the user's
~/.ssh/config, agent, known_hosts and ProxyJump, which is how people already reach their boards. Every call
runs with BatchMode=yes (never a password prompt), ConnectTimeout and StrictHostKeyChecking=accept-new.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeport.benchmark.devices import ARM64, RUNNER_SCRIPT, STAGED_RUNTIME, DeviceRun, DeviceSpec
from edgeport.errors import RuntimeMissing, UserError
from edgeport.formats import format_of

# The device side needs numpy and the artifact's runtime; pip names and the import names.

# Run on the device with its own python (stdin): what is installed, and a scratch directory when it can run.
_PROBE = r"""
import json, platform, sys, tempfile
out = {"python": sys.version.split()[0], "machine": platform.machine(), "missing": []}
for name in %r:
    try:
        __import__(name)
    except Exception as exc:
        out["missing"].append(name)
if not out["missing"]:
    out["tmp"] = tempfile.mkdtemp(prefix="edgeport-")
print("EDGEPORT-PROBE " + json.dumps(out))
"""


def _host_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


class SshDevice:
    emulated = False

    def __init__(self, spec: DeviceSpec, identity: Path | None = None, remote_python: str = "python3",
                 connect_timeout: float = 10.0, warmup: int = 5, runs: int = 50, xnnpack: bool = True,
                 ssh_config: Path | None = None):
        self.spec = spec
        self.name = spec.text
        self.identity = identity
        self.remote_python = remote_python
        self.connect_timeout = connect_timeout
        self.warmup = warmup
        self.runs = runs
        self.xnnpack = xnnpack
        self.ssh_config = ssh_config
        self.where = f"{spec.host}:{spec.port or 22}"

    # -- commands ----------------------------------------------------------------------------------

    def _options(self) -> list[str]:
        opts = ["-F", str(self.ssh_config)] if self.ssh_config is not None else []
        opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.identity is not None:
            opts += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return opts

    @property
    def _target(self) -> str:
        return f"{self.spec.user}@{self.spec.host}" if self.spec.user else str(self.spec.host)

    def _ssh(self, remote_command: str, stdin: str | None = None, timeout: float | None = None):
        port = ["-p", str(self.spec.port)] if self.spec.port else []
        cmd = ["ssh", *self._options(), *port, self._target, remote_command]
        return self._call(cmd, stdin, timeout)

    def _scp(self, sources: list[str], dest: str, timeout: float | None = None):
        port = ["-P", str(self.spec.port)] if self.spec.port else []
        return self._call(["scp", "-q", *self._options(), *port, *sources, dest], None, timeout)

    def _call(self, cmd: list[str], stdin: str | None, timeout: float | None):
        if shutil.which(cmd[0]) is None:
            raise RuntimeMissing(f"the OpenSSH client ({cmd[0]}) is not installed", "apt-get install openssh-client")
        limit = timeout if timeout is not None else self.connect_timeout + 5
        try:
            res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise UserError(f"ssh to {self.where} did not answer within {limit:.0f} s",
                            "check the host is on and reachable, or raise --ssh-timeout") from None
        if res.returncode == 255:  # ssh's own failure: connection, authentication, host key
            reason = (res.stderr.strip().splitlines() or ["no message"])[-1][:200]
            raise UserError(f"cannot reach {self.where} over ssh within {self.connect_timeout:.0f} s: {reason}",
                            f"check that `ssh -p {self.spec.port or 22} {self._target}` works without a password prompt"
                            " (BatchMode), or pass --ssh-key")
        return res

    def _remote(self, name: str) -> str:
        return f"{self._target}:{name}"

    # -- the run -------------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail fast (typed error) when the host cannot be reached or refuses the key."""
        self._ssh("true")

    def probe(self, fmt, staged: bool = False) -> dict:
        """The device's python version, machine, missing modules (numpy, and ``fmt``'s runtime unless edgeport
        stages a native one: ``staged``), and a scratch directory when nothing is missing."""
        module, package = fmt.runtime_module, fmt.runtime_package
        modules = ["numpy"] if staged else ["numpy", module]
        res = self._ssh(self.remote_python + " -", stdin=_PROBE % (modules,), timeout=self.connect_timeout + 30)
        line = next((out_line for out_line in res.stdout.splitlines() if out_line.startswith("EDGEPORT-PROBE ")), None)
        if line is None:
            err = (res.stderr.strip().splitlines() or ["no output"])[-1][:160]
            raise RuntimeMissing(f"{self.remote_python!r} does not run on {self.where}: {err}",
                                 "install Python 3 there (sudo apt-get install python3 python3-venv) or pass --remote-python")
        info = json.loads(line[len("EDGEPORT-PROBE "):])
        if info["missing"]:
            pins = [f"numpy=={_host_version('numpy')}" if _host_version("numpy") else "numpy"]
            version = _host_version(module)
            if not staged:
                pins.append(f"{package}=={version}" if version else package)
            raise RuntimeMissing(
                f"{', '.join(info['missing'])} missing for {self.remote_python} on {self.where} "
                f"(python {info['python']}, {info['machine']})",
                f"run there: python3 -m venv ~/edgeport-venv && ~/edgeport-venv/bin/pip install {' '.join(shlex.quote(p) for p in pins)}"
                " and pass --remote-python ~/edgeport-venv/bin/python")
        return info

    def run(self, artifact: Path, inputs: np.ndarray, threads: int) -> DeviceRun:
        artifact = Path(artifact)
        fmt = format_of(artifact)
        if not fmt.runtime_module:
            raise UserError(f"cannot run {artifact.name} on a device", f"{fmt.name} files have no device runtime")
        native = fmt.device_runtime(print)  # found or built here before connecting (a typed error if it cannot be)
        info = self.probe(fmt, staged=native is not None)
        remote = info["tmp"]
        q = shlex.quote
        try:
            if native is not None and info["machine"].lower() not in ARM64:
                raise UserError(f"{artifact.name} needs an arm64 board: {self.where} is {info['machine']}",
                                f"edgeport stages {fmt.name}'s aarch64 runtime there; bench it locally (--device local) instead")
            with tempfile.TemporaryDirectory(prefix="edgeport-ssh-") as tmp:
                local = Path(tmp)
                np.save(local / "inputs.npy", np.ascontiguousarray(inputs, dtype=np.float32))
                sources = [str(artifact), str(local / "inputs.npy"), str(RUNNER_SCRIPT)]
                if native is not None:  # the folder's contents go to <remote>/STAGED_RUNTIME, where the runner looks
                    shutil.copytree(native, local / STAGED_RUNTIME)
                    sources.append(str(local / STAGED_RUNTIME))
                sent = self._scp(["-r", *sources], self._remote(remote + "/"),
                                 timeout=self.connect_timeout + 300)
                if sent.returncode != 0:
                    raise UserError(f"copying to {self.where}:{remote} failed: {sent.stderr.strip()[:200]}")
                command = (f"cd {q(remote)} && {self.remote_python} {RUNNER_SCRIPT.name} --artifact {q(artifact.name)}"
                           f" --inputs inputs.npy --threads {int(threads)} --warmup {int(self.warmup)} --runs {int(self.runs)}"
                           f" --out result.json --outputs-npy outputs.npy" + ("" if self.xnnpack else " --no-xnnpack"))
                ran = self._ssh(command, timeout=3600)
                if ran.returncode != 0:
                    tail = " | ".join(err_line.strip() for err_line in ran.stderr.strip().splitlines()[-2:])[:300]
                    raise UserError(f"device_runner.py failed on {self.where} (exit {ran.returncode}): {tail}")
                got = self._scp([self._remote(f"{remote}/result.json"), self._remote(f"{remote}/outputs.npy")], str(local),
                                timeout=self.connect_timeout + 300)
                if got.returncode != 0:
                    raise UserError(f"copying results back from {self.where} failed: {got.stderr.strip()[:200]}")
                result = json.loads((local / "result.json").read_text())
                outputs = np.load(local / "outputs.npy")
        finally:
            self._cleanup(remote)
        # a "device" that is really an emulator (e.g. a host whose python runs under qemu-aarch64 with
        # edgeport's fake cpuinfo) must not have its wall time reported as device latency
        emulated = "emulation" in str(result.get("cpuinfo_model") or "").lower()
        return DeviceRun.from_result(result, device=self.name, outputs=outputs, emulated=emulated,
                                     remote_python=self.remote_python, remote_dir=remote)

    def _cleanup(self, remote: str) -> None:
        if remote.startswith("/") and "edgeport-" in remote:  # never remove anything we did not create
            try:
                self._ssh(f"rm -rf {shlex.quote(remote)}")
            except (UserError, RuntimeMissing):
                pass  # the run's own error (or result) matters more than a leftover temp dir


def make_device(spec: DeviceSpec, identity: Path | None = None, remote_python: str = "python3",
                connect_timeout: float = 10.0, **options) -> SshDevice:
    if identity is not None and not Path(identity).is_file():
        raise UserError(f"--ssh-key {identity} does not exist")
    return SshDevice(spec, identity=identity, remote_python=remote_python, connect_timeout=connect_timeout, **options)
