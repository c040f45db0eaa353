"""Name -> factory registries for models (and, later, targets and runtimes).

A model family module registers each variant with ``@register_model`` and the figures its paper prints,
so ``edgeport models`` and the zoo test can compare what we build with what was published.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

from edgeport.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered name -> entry mapping whose lookup errors suggest close names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=5, cutoff=0.5)
            hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(self._entries)}"
            raise UserError(f"unknown {self.kind} {name!r}", hint) from None

    def remove(self, name: str) -> T:
        """Take an entry out again (a plug-in unloaded, a test's temporary registration)."""
        return self._entries.pop(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


@dataclass(frozen=True)
class PaperFigure:
    """A figure as printed in a paper, e.g. ``PaperFigure(4.2, 1e6)`` for "4.2M".

    ``decimals`` is how many decimals were printed; the figure covers everything that rounds to it.
    """

    value: float
    unit: float = 1e6
    decimals: int = 0
    source: str = ""

    def tolerance(self) -> float:
        """Absolute tolerance in units of 1: 2 % or the rounding of the printed figure, whichever is looser."""
        rounding = 0.5 * 10 ** (-self.decimals) * self.unit
        return max(0.02 * self.value * self.unit, rounding)

    def matches(self, measured: float) -> bool:
        return abs(measured - self.value * self.unit) <= self.tolerance() + 1e-9

    def __str__(self) -> str:
        return f"{self.value:.{self.decimals}f}M"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    factory: Callable[..., object]
    kwargs: dict = field(default_factory=dict)
    input_size: int = 224
    paper_params: PaperFigure | None = None
    paper_macs: PaperFigure | None = None
    # Where a faithful reference implementation (torchvision) differs from the paper's rounded count,
    # we match the implementation exactly.
    exact_params: int | None = None
    description: str = ""
    preprocess: object | None = None  # edgeport.data.preprocess.Preprocess; None: ImageNet at input_size
    weights: str | None = None  # checkpoint shipped with edgeport (path relative to the package)

    def build(self, **overrides):
        return self.factory(**{**self.kwargs, **overrides})

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.input_size, self.input_size)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    name: str,
    factory: Callable[..., object],
    *,
    family: str,
    input_size: int = 224,
    paper_params: PaperFigure | None = None,
    paper_macs: PaperFigure | None = None,
    exact_params: int | None = None,
    description: str = "",
    preprocess: object | None = None,
    weights: str | None = None,
    **kwargs,
) -> ModelSpec:
    spec = ModelSpec(
        name=name,
        family=family,
        factory=factory,
        kwargs=kwargs,
        input_size=input_size,
        paper_params=paper_params,
        paper_macs=paper_macs,
        exact_params=exact_params,
        description=description,
        preprocess=preprocess,
        weights=weights,
    )
    MODELS.add(name, spec)
    return spec
