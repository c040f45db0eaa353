""".tflite files: run in ai-edge-litert's Interpreter (XNNPACK); graph and int8 coverage from the flatbuffer,
delegation from the interpreter's post-delegation graph; NHWC image inputs."""

from __future__ import annotations

from pathlib import Path

from edgeport.formats.base import FileFormat, register_format


class TfliteFormat(FileFormat):
    name = "tflite"
    suffix = ".tflite"
    runtime_module = "ai_edge_litert"
    runtime_package = "ai-edge-litert"
    nhwc = True

    def open_runner(self, path: Path, threads: int = 1):
        from edgeport.runtimes.litert_runner import LiteRtRunner

        meta = self.metadata(path) or {}
        return LiteRtRunner(path, threads=threads, output_permutation=meta.get("output_permutation"))

    def graph(self, path: Path):
        from edgeport.formats.graph_summary import tflite_summary

        return tflite_summary(path)

    def metadata_text(self, path: Path) -> str | None:
        from edgeport.exporters.tflite_compact import read_metadata

        return read_metadata(Path(path).read_bytes())

    def coverage(self, path: Path):
        from edgeport.formats.int8_coverage import tflite_coverage

        return tflite_coverage(path)

    def delegation(self, path: Path):
        from edgeport.formats.delegation import tflite_delegation

        return tflite_delegation(path)

    def layer_names(self, path: Path, fp32_onnx) -> dict[str, str]:
        from edgeport.formats.layer_names import onnx_weight_norms, tflite_names

        return tflite_names(Path(path).read_bytes(), onnx_weight_norms(fp32_onnx))


TFLITE = register_format(TfliteFormat())
