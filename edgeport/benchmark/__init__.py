"""Latency of artifacts in the runtimes that run them (local x86 now; arm64/QEMU and SSH devices to come)."""
