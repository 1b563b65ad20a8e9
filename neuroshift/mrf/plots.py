"""PNG curves of Dice and lesion detection rate against the binarisation threshold (33 % point marked)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from .metrics import PAPER_THRESHOLD_PCT, at_threshold


def curves_png(rows: Sequence[dict[str, Any]], title: str = "Lesion probability map") -> bytes:
    """PNG bytes: Dice and LDR vs threshold (percent), the paper's 33 % point marked and labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    t = [r["threshold_pct"] for r in rows]
    ax.plot(t, [r["dice"] for r in rows], label="Dice")
    ax.plot(t, [r["ldr"] for r in rows], label="lesion detection rate")
    at = at_threshold(rows, PAPER_THRESHOLD_PCT)
    ax.axvline(PAPER_THRESHOLD_PCT, color="grey", linestyle=":", linewidth=1)
    for key, mk in (("dice", "o"), ("ldr", "s")):
        ax.plot([at["threshold_pct"]], [at[key]], mk, color="black")
    ax.annotate(f"33 %: Dice {at['dice']:.2f}, LDR {at['ldr']:.2f}", (at["threshold_pct"], at["dice"]),
                textcoords="offset points", xytext=(8, 8), fontsize=8)
    ax.set_xlabel("binarisation threshold (%)")
    ax.set_ylabel("Dice / LDR")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def write_curves_png(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "Lesion probability map") -> Path:
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(path, curves_png(rows, title))
    return Path(path)


__all__ = ["curves_png", "write_curves_png"]
