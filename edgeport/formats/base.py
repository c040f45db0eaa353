"""One object per artifact file format: the only place that knows what a file of that format is.

Every question edgeport asks of an artifact on disk (which runtime runs it, what its graph computes in which
dtype, how many compute ops are int8, what the runtime delegates, what the PyTorch layers are called in it)
goes through ``format_of(path)``; nothing else looks at a file's suffix. A new format is one subclass of
``FileFormat`` passed to ``register_format``, from inside the package or outside it.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.errors import UserError
from edgeport.registry import Registry


class FileFormat:
    """What edgeport reads from files of one format. Subclasses set the class attributes and override the
    methods their runtime supports; a method left as is says, in a typed error, that the format lacks it."""

    name: str = ""  # "onnx": also the first half of its target names (onnx-fp32) and of the file name's suffix
    suffix: str = ""  # ".onnx"
    runtime_module: str = ""  # what a device imports to run it ("onnxruntime"): probed on remote devices
    runtime_package: str = ""  # the pip requirement that provides runtime_module
    nhwc: bool = False  # image inputs are NHWC (edgeport's runners transpose NCHW data for them)

    def device_runtime(self, say=print) -> Path | None:
        """A folder of native runtime files that a remote arm64 device gets beside device_runner.py (as
        ``edgeport.benchmark.devices.STAGED_RUNTIME``), found or built on this machine; None when the device's own
        Python imports ``runtime_module`` instead. A format with one runs only on the machines it was built for."""
        return None

    def open_runner(self, path: Path, threads: int = 1):
        """A runner: ``run(batch)``, ``invoker(batch=None)``, ``name``, ``version`` and ``input_shape``."""
        raise self._missing("run")

    def summarize(self, path: Path):
        """edgeport.formats.graph_summary.GraphSummary of the file, with its edgeport metadata in
        ``details["edgeport"]`` when it has some."""
        summary = self.graph(path)
        meta = self.metadata(path)
        if meta:
            summary.details["edgeport"] = meta
        return summary

    def graph(self, path: Path):
        """The GraphSummary read from the file's graph (what ``summarize`` adds the metadata to)."""
        raise self._missing("inspect")

    def coverage(self, path: Path):
        """edgeport.formats.int8_coverage.Coverage: compute ops in int8 vs float."""
        raise self._missing("read int8 coverage of")

    def delegation(self, path: Path):
        """edgeport.formats.delegation.Delegation (what the runtime's fast path runs), or None if unknown."""
        return None

    def metadata(self, path: Path) -> dict | None:
        """The edgeport metadata entry written into the file (edgeport.exporters.metadata), or None; a damaged
        file or entry has none (running or summarizing it names the damage)."""
        import json

        try:
            text = self.metadata_text(path)
            meta = json.loads(text) if text else None
        except Exception:  # noqa: BLE001 - any damage means no trustworthy metadata
            return None
        return meta if isinstance(meta, dict) else None

    def metadata_text(self, path: Path) -> str | None:
        """The raw text of the file's edgeport entry (None: the format stores none)."""
        return None

    def layer_names(self, path: Path, fp32_onnx) -> dict[str, str]:
        """key -> PyTorch layer name for the ops of an int8 file ({} if the format cannot tell)."""
        return {}

    def input_nchw(self, declared: list | tuple) -> tuple[int, ...]:
        """The NCHW shape of an image input declared as ``declared`` (symbolic dims become 1)."""
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in declared]
        if len(dims) != 4:
            raise UserError(f"the artifact's input has shape {list(declared)}; edgeport handles image models (N, C, H, W)")
        if self.nhwc and dims[3] in (1, 3) and dims[1] not in (1, 3):
            return (dims[0], dims[3], dims[1], dims[2])
        return tuple(dims)

    def _missing(self, what: str) -> UserError:
        return UserError(f"edgeport cannot {what} {self.name} files", f"the {self.name} format does not provide it")


FORMATS: Registry[FileFormat] = Registry("file format")


def register_format(fmt: FileFormat) -> FileFormat:
    """Add ``fmt`` (an instance) under its name; its suffix must be new too."""
    if not fmt.name or not fmt.suffix.startswith("."):
        raise ValueError(f"a FileFormat needs a name and a suffix starting with '.': {fmt!r}")
    if any(f.suffix == fmt.suffix.lower() for f in formats()):
        raise ValueError(f"suffix {fmt.suffix} registered twice")
    FORMATS.add(fmt.name, fmt)
    return fmt


def formats() -> list[FileFormat]:
    return [FORMATS.get(n) for n in FORMATS.names()]


def format_of(path: Path | str) -> FileFormat:
    """The format of a file, by its suffix; a typed error naming the known ones otherwise."""
    suffix = Path(path).suffix.lower()
    for fmt in formats():
        if fmt.suffix == suffix:
            return fmt
    known = ", ".join(f.suffix for f in formats())
    raise UserError(f"{Path(path).name}: unknown file format {suffix or '(no extension)'}", f"edgeport reads {known} files")
