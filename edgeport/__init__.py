"""edgeport: take efficient PyTorch vision models to edge devices.

The public API (edgeport.api): ``export``, ``quantize``, ``validate``, ``evaluate``, ``bench``, ``run``,
``merge_reports`` and ``inspect``; options and results are frozen dataclasses; failures raise ``EdgeportError`` subclasses.
Importing edgeport is light: torch and the converters load when a function needs them.
"""

__version__ = "0.1.0"

from edgeport.api import (  # noqa: E402
    ArtifactResult,
    ExportResult,
    ParityResult,
    ValidateResult,
    bench,
    evaluate,
    export,
    inspect,
    load_model,
    merge_reports,
    quantize,
    run,
    validate,
)
from edgeport.errors import (  # noqa: E402
    BadOption,
    EdgeportError,
    ParityFailed,
    RuntimeMissing,
    UnsupportedOp,
    UsageError,
    UserError,
)
from edgeport.quantization.options import QuantOptions  # noqa: E402

__all__ = [
    "ArtifactResult", "BadOption", "EdgeportError", "ExportResult", "ParityFailed", "ParityResult", "QuantOptions",
    "RuntimeMissing", "UnsupportedOp", "UsageError", "UserError", "ValidateResult", "__version__", "bench", "evaluate",
    "export", "inspect", "load_model", "merge_reports", "quantize", "run", "validate",
]
