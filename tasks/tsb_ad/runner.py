"""Runs inside the TSB-AD peers' own environment (numpy<2; `tasks/tsb_peers.py` makes it and
calls this file as a script): imports nothing of Vigil's.

``runner.py fit-score METHOD IN OUT``: reads ``IN/{train,validation,test}.npy``; fits TSB-AD's
own implementation of METHOD, with TSB-AD's optimal multivariate hyper-parameters
(``TSB_AD/HP_list.py``, ``Optimal_Multi_algo_HP_dict``), on the head of train; writes to OUT the
scores of the held-out tail of train (``calibration.npy``, scored with the head's last steps
as context), of the validation head and of the test tail, and ``meta.json`` (seconds, memory).

``runner.py metrics LABELS SCORES WINDOW [THRESHOLDS]``: prints TSB-AD's own AUC-PR and VUS-PR
as JSON (VUS-PR over THRESHOLDS sampled thresholds, TSB-AD's 250 by default, or ``all``).
"""

import json
import os
import random
import resource
import sys
import time

import numpy as np

SEED = 2024  # TSB-AD's main.py seeds numpy, random and torch with it
CALIBRATION_FRACTION = 0.1  # as Vigil's detectors hold out the tail of train
CONTEXT = 150  # steps of the head scored before the tail (the longest window below)


# USAD and OmniAnomaly hold out the last 20% of what they are fitted on for their own
# validation loss and read it in windows of 100. On several metrics a split shorter than a
# window comes back in short windows and the model fails on its shape (SKAB: 360 steps fitted,
# a split of 72), so there the split grows to one window, where the rest still holds one.
# The window stays TSB-AD's, and so does every series with room for its 20% (or too short for
# two windows: one metric's short split is left empty, as TSB-AD leaves it).
OWN_VALIDATION_SIZE = 0.2


def own_validation_size(window, n_fit):
    """The share of ``n_fit`` steps USAD and OmniAnomaly hold out: TSB-AD's 0.2, or one
    window (and a step: the split is cut with int()) where 0.2 holds less and the rest holds
    a window too."""
    one_window = (window + 1) / n_fit
    if OWN_VALIDATION_SIZE * n_fit < window + 1 and n_fit - (window + 2) >= window:  # int() again
        return one_window
    return OWN_VALIDATION_SIZE


def _make(method, n_features, n_fit):
    """TSB-AD's class for ``method`` with the arguments its model_wrapper.run_<name> passes
    (``n_fit``: the steps it is fitted on: `own_validation_size`)."""
    if method == "tsb_kmeansad":
        from TSB_AD.models.KMeansAD import KMeansAD

        return KMeansAD(k=10, window_size=40, stride=1), "predict"
    if method == "tsb_pca":
        from TSB_AD.models.PCA import PCA

        # zero_pruning off: TSB-AD's decision_function does not drop the all-zero columns that its
        # fit dropped, so scoring any series but the one fitted fails with it on (MSL's commands)
        return PCA(slidingWindow=100, n_components=0.25, zero_pruning=False), "decision_function"
    if method == "tsb_autoencoder":
        from TSB_AD.models.AE import AutoEncoder

        return AutoEncoder(slidingWindow=100, hidden_neurons=[128, 64], batch_size=128, epochs=50), "decision_function"
    if method == "tsb_cnn":
        from TSB_AD.models.CNN import CNN

        return CNN(window_size=50, num_channel=[32, 32, 40], feats=n_features, lr=0.0008, batch_size=128), (
            "decision_function"
        )
    if method == "tsb_lstmad":
        from TSB_AD.models.LSTMAD import LSTMAD

        return LSTMAD(window_size=150, pred_len=1, lr=0.0008, feats=n_features, batch_size=128), "decision_function"
    if method == "tsb_usad":
        from TSB_AD.models.USAD import USAD

        split = own_validation_size(100, n_fit)
        return USAD(win_size=100, feats=n_features, lr=0.001, validation_size=split), "decision_function"
    if method == "tsb_omnianomaly":
        from TSB_AD.models.OmniAnomaly import OmniAnomaly

        split = own_validation_size(100, n_fit)
        return OmniAnomaly(win_size=100, feats=n_features, lr=0.002, validation_size=split), "decision_function"
    raise SystemExit(f"unknown TSB-AD peer {method!r}")


def _seed():
    import torch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def _scores(model, how, x):
    s = np.asarray(getattr(model, how)(x), dtype=np.float64).ravel()
    if len(s) != len(x):
        raise SystemExit(f"{type(model).__name__} gave {len(s)} scores for {len(x)} steps")
    if not np.isfinite(s).all():
        raise SystemExit(f"{type(model).__name__} gave non-finite scores at rows {np.flatnonzero(~np.isfinite(s))[:5]}")
    return s


def fit_score(method, src, out):
    arrays = {k: np.load(os.path.join(src, f"{k}.npy"), allow_pickle=False) for k in ("train", "validation", "test")}
    train = arrays["train"].astype(np.float64)
    _seed()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tail = int(len(train) * CALIBRATION_FRACTION)
    head = train[:-tail] if tail >= 1 else train
    model, how = _make(method, train.shape[1], len(head))
    t0 = time.perf_counter()
    model.fit(head)
    fit_seconds = time.perf_counter() - t0
    scores = {}
    if tail >= 1:
        ctx = min(CONTEXT, len(head))
        scores["calibration"] = _scores(model, how, train[len(head) - ctx :])[ctx:]
    else:
        scores["calibration"] = np.empty(0)
    scores["validation"] = _scores(model, how, arrays["validation"].astype(np.float64))
    t0 = time.perf_counter()
    scores["test"] = _scores(model, how, arrays["test"].astype(np.float64))
    score_seconds = time.perf_counter() - t0
    for k, v in scores.items():
        np.save(os.path.join(out, f"{k}.npy"), v, allow_pickle=False)
    from importlib.metadata import version

    meta = {
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "test_steps": len(arrays["test"]),
        "peak_memory_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
        "fitted_on": len(head),
        "tsb_ad": version("TSB_AD"),
    }
    with open(os.path.join(out, "meta.json"), "w") as fh:
        json.dump(meta, fh)


def metrics(labels_path, scores_path, window, thresholds="250"):
    from TSB_AD.evaluation.basic_metrics import basic_metricor, generate_curve

    labels = np.load(labels_path, allow_pickle=False).astype(int)
    scores = np.load(scores_path, allow_pickle=False).astype(np.float64)
    auc_pr = basic_metricor().metric_PR(labels, scores)
    # TSB-AD samples 250 thresholds; "all" asks for one per step, the exact curve
    thre = len(scores) if thresholds == "all" else int(thresholds)
    vus_pr = generate_curve(labels, scores, int(window), "opt", thre)[7]
    print(json.dumps({"auc_pr": float(auc_pr), "vus_pr": float(vus_pr)}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "fit-score":
        fit_score(*args)
    elif command == "metrics":
        metrics(*args)
    else:
        raise SystemExit(
            f"unknown command {command!r}: fit-score METHOD IN OUT | metrics LABELS SCORES WINDOW [THRESHOLDS]"
        )
