"""A throwaway OpenSSH server on a free loopback port for the ssh:// device tests.

Its own host key, its own AuthorizedKeysFile holding a throwaway client key, key login only, for the user
running the tests (root logs in by key). An ssh_config for the client pins the known_hosts file inside the
temp dir, so the tests never touch ~/.ssh.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


@dataclass
class LocalSshd:
    port: int
    user: str
    key: Path
    ssh_config: Path
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """Why a local sshd cannot run here, or None."""
    if not SSHD.is_file():
        return "openssh-server is not installed (scripts/setup.sh installs it)"
    if shutil.which("ssh") is None or shutil.which("scp") is None or shutil.which("ssh-keygen") is None:
        return "openssh-client is not installed"
    return None


def start(tmp: Path, forced_command: str | None = None) -> LocalSshd:
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    key, host_key = tmp / "client_key", tmp / "host_key"
    for k in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    prefix = f'command="{forced_command}" ' if forced_command else ""
    (tmp / "authorized_keys").write_text(prefix + (tmp / "client_key.pub").read_text())
    os.chmod(tmp / "authorized_keys", 0o600)
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE", "",
    ]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    client = tmp / "ssh_config"
    client.write_text(f"Host *\n  UserKnownHostsFile {tmp / 'known_hosts'}\n  LogLevel ERROR\n")
    log = tmp / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("sshd did not listen within 15 s")
    return LocalSshd(port, getpass.getuser(), key, client, proc, log)
