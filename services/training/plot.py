"""Draw predicted against true RUL with the interval for a few test assets (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from services.inference.model import Prediction
from services.training.sequences import SplitData

_COLOURS = {"lstm": "tab:blue", "shortcut": "tab:orange", "linear": "tab:green"}


def failing_assets(data: SplitData, count: int) -> list[str]:
    """Return up to ``count`` failing assets of ``data``, spread over its list."""
    failing = [a for a in data.asset_ids if np.isfinite(data.true_rul[data.asset_rows(a)]).all()]
    if len(failing) <= count:
        return failing
    picks = np.linspace(0, len(failing) - 1, count).round().astype(int)
    return [failing[i] for i in picks]


def plot_tracks(
    path: Path,
    data: SplitData,
    predictions: Mapping[str, Prediction],
    *,
    cap_hours: float,
    count: int,
    title: str,
) -> None:
    """Write a PNG: one panel per asset, hours to failure on x, RUL on y."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    assets = failing_assets(data, count)
    fig, axes = plt.subplots(
        len(assets), 1, figsize=(9, 2.6 * max(len(assets), 1)), squeeze=False, sharex=True
    )
    for ax, asset_id in zip(axes[:, 0], assets, strict=True):
        rows = data.asset_rows(asset_id)
        x = -data.true_rul[rows]
        ax.plot(x, data.target[rows], color="black", lw=1.5, label="true RUL (capped)")
        for name, pred in predictions.items():
            colour = _COLOURS.get(name)
            ax.plot(x, pred.rul[rows], color=colour, lw=1.0, label=name)
            if name == "lstm":
                ax.fill_between(
                    x,
                    pred.low[rows],
                    pred.high[rows],
                    color=colour,
                    alpha=0.2,
                    label="lstm 80 % interval",
                )
        ax.set_ylim(0, cap_hours * 1.05)
        ax.set_xlim(-2.5 * cap_hours, 1.0)  # the healthy stretch before is flat at the cap
        ax.set_ylabel("RUL (h)")
        ax.set_title(asset_id, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("operating hours before failure")
    axes[0, 0].legend(fontsize=7, loc="lower left", ncol=3)
    fig.suptitle(f"RUL on held-out assets, model {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
