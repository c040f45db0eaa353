"""The reference zoo: one module per family; importing this package registers every variant."""

from edgeport.models import mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1, shufflenet_v2  # noqa: F401

# isort: split
from edgeport.models import fashion_mnist  # noqa: F401  (trained checkpoints; after the families they use)
from edgeport.registry import MODELS

__all__ = ["MODELS"]
