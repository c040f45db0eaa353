"""File formats: one ``FileFormat`` object per artifact format (.onnx, .tflite, .pte) that opens a runner, summarizes
the graph, counts int8 coverage, reports delegation and maps layer names; ``format_of(path)`` picks it."""

from edgeport.formats import onnx_file, pte_file, tflite_file  # noqa: E402,F401  (register the built-in formats)
from edgeport.formats.base import FORMATS, FileFormat, format_of, formats, register_format

__all__ = ["FORMATS", "FileFormat", "format_of", "formats", "register_format"]
