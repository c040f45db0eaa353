""".onnx files: run in onnxruntime's CPU provider; graph, int8 coverage and ORT kernel report from the ModelProto."""

from __future__ import annotations

from pathlib import Path

from edgeport.formats.base import FileFormat, register_format


class OnnxFormat(FileFormat):
    name = "onnx"
    suffix = ".onnx"
    runtime_module = "onnxruntime"
    runtime_package = "onnxruntime"

    def open_runner(self, path: Path, threads: int = 1):
        from edgeport.runtimes.onnxruntime_runner import OrtRunner

        return OrtRunner(path, threads=threads)

    def graph(self, path: Path):
        from edgeport.formats.graph_summary import onnx_summary

        return onnx_summary(path)

    def metadata_text(self, path: Path) -> str | None:
        import onnx

        from edgeport.exporters.metadata import KEY

        model = onnx.load(str(path), load_external_data=False)
        return next((p.value for p in model.metadata_props if p.key == KEY), None)

    def coverage(self, path: Path):
        from edgeport.formats.int8_coverage import onnx_coverage

        return onnx_coverage(path)

    def delegation(self, path: Path):
        from edgeport.formats.delegation import onnx_kernels

        return onnx_kernels(path)

    def layer_names(self, path: Path, fp32_onnx) -> dict[str, str]:
        import onnx

        from edgeport.formats.layer_names import onnx_names

        return onnx_names(onnx.load(str(path), load_external_data=False))


ONNX = register_format(OnnxFormat())
