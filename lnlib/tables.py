"""Result tables as pandas DataFrames, ready to display in the book and to save as CSV."""

from __future__ import annotations

import pandas as pd

ARROWS = {"fpr95": "FPR95 ↓", "auroc": "AUROC ↑", "aupr_in": "AUPR-In ↑", "aupr_out": "AUPR-Out ↑"}


def ood_frame(ood: dict) -> pd.DataFrame:
    """One row per OOD set plus an ``average`` row; columns FPR95/AUROC/AUPR-In/AUPR-Out in percent.

    ``ood``: the ``"ood"`` entry of a run's metrics.json (:func:`lnlib.evaluate.ood_table`).
    """
    rows = {**ood["sets"], "average": ood["average"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")[list(ARROWS)] * 100
    frame.index.name = "OOD set"
    return frame.rename(columns=ARROWS)


def style_percent(frame: pd.DataFrame, caption: str | None = None):
    """Display helper: one decimal, the average row set apart, an optional caption."""
    styler = frame.style.format("{:.1f}")
    if "average" in frame.index:
        styler = styler.set_properties(subset=pd.IndexSlice[["average"], :], **{"font-weight": "bold"})
    return styler.set_caption(caption) if caption else styler
