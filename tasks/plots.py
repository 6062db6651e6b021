"""Scores against labels with the alert rule (the smoothed score where the rule smooths, and
the threshold it is compared with): a PNG (matplotlib) and an interactive HTML (plotly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.datasets import ranges_from_labels


def write_plots(folder: Path, result, labels: np.ndarray) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    rule = result.threshold
    scores = result.test_scores
    alert = rule.smoothed(scores, result.val_scores)  # what the threshold is compared with
    t = np.arange(len(scores))
    fig, ax = plt.subplots(figsize=(12, 3.5))
    ax.plot(t, scores, lw=0.7, label="score")
    if rule.smoothing != "none":
        ax.plot(t, alert, lw=0.9, label=f"trailing {rule.smoothing} of {rule.window}")
    ax.axhline(rule.value, color="red", ls="--", lw=1, label="threshold")
    for s, e in ranges_from_labels(labels):
        ax.axvspan(s, e, color="orange", alpha=0.25, lw=0)
    ax.set(
        title=f"{result.name}: test scores; labelled anomalies shaded\nthreshold: {result.threshold.rule}",
        xlabel="test step",
        ylabel="score",
    )
    ax.set_yscale("symlog")
    ax.legend(loc="upper right")
    fig.tight_layout()
    png = folder / f"{result.name}_test_scores.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)

    go_fig = go.Figure()
    go_fig.add_trace(go.Scatter(x=t, y=scores, mode="lines", name="score", line={"width": 1}))
    if rule.smoothing != "none":
        go_fig.add_trace(go.Scatter(x=t, y=alert, mode="lines", name=f"trailing {rule.smoothing} of {rule.window}"))
    go_fig.add_hline(y=result.threshold.value, line_dash="dash", line_color="red", annotation_text="threshold")
    for s, e in ranges_from_labels(labels):
        go_fig.add_vrect(x0=s, x1=e, fillcolor="orange", opacity=0.25, line_width=0)
    go_fig.update_layout(title=f"{result.name}: test scores", xaxis_title="test step", yaxis_title="score")
    html = folder / f"{result.name}_test_scores.html"
    go_fig.write_html(html, include_plotlyjs="cdn")
    return [png, html]
