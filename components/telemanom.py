"""Telemanom's own alerting protocol (Hundman et al., KDD 2018; khundman/telemanom ``errors.py``
and ``config.yaml``), label-free, as a reference to report Vigil's scores under.

Telemanom does not set one threshold on a validation split: it smooths a channel's errors with
an EWMA and, as each batch of 70 new errors arrives, sets the non-parametric dynamic threshold
(`thresholds.dynamic_threshold`) on the trailing window of 30 batches (2,100 errors) that ends
with that batch, and flags steps of that batch only. Each flagged step pulls ``buffer`` steps
either side of it (within the batch) into its sequence; a sequence of one step is dropped.
Vigil's own alert rule (`alerting.AlertRule`) is fixed once chosen, so this lives beside it, for
the benchmark's comparison with telemanom's published event precision and recall.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .thresholds import dynamic_threshold

BATCH = 70  # config.yaml: batch_size
WINDOW_BATCHES = 30  # window_size: trailing batches in each window
SMOOTHING_SHARE = 0.05  # smoothing_perc: the EWMA's span, as a share of the window (105 errors)
BUFFER = 100  # error_buffer
WINDOW = BATCH * WINDOW_BATCHES  # 2,100 smoothed scores per threshold
SPAN = int(WINDOW * SMOOTHING_SHARE)  # 105


def ewma(scores: np.ndarray, span: int = SPAN) -> np.ndarray:
    """Telemanom's smoothing of its errors (pandas' ``ewm(span).mean()``, as it calls it)."""
    return pd.Series(np.asarray(scores, dtype=np.float64)).ewm(span=span).mean().to_numpy()


def telemanom_flags(
    smoothed: np.ndarray, history: int, batch: int = BATCH, window: int = WINDOW, buffer: int = BUFFER
) -> np.ndarray:
    """Flags of ``smoothed[history:]`` (the stream judged), each batch of ``batch`` steps
    thresholded on the ``window`` smoothed scores that end with it; the ``history`` steps before
    the stream fill the first windows and are never judged. Causal batch by batch: a batch's
    flags read no later step."""
    s = np.asarray(smoothed, dtype=np.float64)
    if not 0 <= history <= len(s):
        raise ValueError(f"history must be in [0, {len(s)}], got {history}")
    flags = np.zeros(len(s), dtype=bool)
    for start in range(history, len(s), batch):
        end = min(start + batch, len(s))
        epsilon = dynamic_threshold(s[max(0, end - window) : end])
        # steps up to `buffer` before the batch, flagged under this window's threshold, reach into it
        lo = max(0, start - buffer)
        for i in np.flatnonzero(s[lo:end] >= epsilon) + lo:
            flags[max(start, i - buffer) : min(end, i + buffer + 1)] = True
    return flags[history:]
