"""Plots for report.html, drawn with matplotlib as inline SVG text (no JavaScript, no external files).

SVG output is made reproducible: no date in the metadata and a fixed id salt, so the same manifest gives
the same report bytes.
"""

from __future__ import annotations

import io


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    return fig, fig.add_subplot()


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "edgeport", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG goes inside HTML


def bars(labels: list[str], values: list[float], xlabel: str, title: str) -> str:
    """Horizontal bars, one per label, each with its value written at its end."""
    fig, ax = _figure(6.4, 0.45 * len(labels) + 1.0)
    y = range(len(labels))
    ax.barh(list(y), values, color="#4c72b0")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    top = max(values) if values else 1.0
    for i, v in enumerate(values):
        ax.text(v + top * 0.01, i, f"{v:,.2f}", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.18 or 1.0)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def per_layer(series: dict[str, list[dict]], title: str) -> str:
    """SQNR per layer (dB, higher is better) along the network, one line per int8 target.
    ``series``: target -> [{"layer": name, "sqnr_db": value}, ...] in graph order."""
    fig, ax = _figure(7.2, 3.2)
    for target, points in series.items():
        values = [float("nan") if p["sqnr_db"] is None else p["sqnr_db"] for p in points]  # exact (inf) is null in JSON
        ax.plot(range(len(points)), values, marker=".", label=target)
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("SQNR vs PyTorch (dB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _svg(fig)
