"""A study on prepared data held in memory, whose test tail fails on access, with the search
spaces the tuning tests use (also run by the worker processes those tests start)."""

import numpy as np

from components.datasets.synthetic import make_synthetic
from tasks.tune import run_study

LABEL_FREE = {"holdout_fraction": 0.25, "n_anomalies": 6, "seed": 0}
IFOREST_SPACE = {
    "n_estimators": {"type": "int", "low": 20, "high": 120, "step": 20, "log": False},
    "max_features": {"type": "float", "low": 0.3, "high": 1.0, "step": None, "log": False},
}
LSTM_SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "step": None, "log": True},
    "hidden": {"type": "categorical", "choices": [8, 16]},
}
LSTM_FIXED = {"window": 8, "epochs": 6, "patience": 6, "batch_size": 64, "device": "cpu"}


class Prepared:
    """The prepared data as `tasks.data.Processed` serves it, from memory; the test tail's
    arrays raise on access, so a study that reads them fails."""

    TAIL = ("test", "test_labels", "raw_test")

    def __init__(self, seed: int = 0, n_train: int = 1200, n_test: int = 1600, labelled_validation: bool = True):
        d = make_synthetic(seed=seed, n_train=n_train, n_test=n_test, n_metrics=6, n_anomalies=8)
        lo, hi = d.train.min().to_numpy(), d.train.max().to_numpy()
        scale = lambda f: ((f.to_numpy() - lo) / (hi - lo)).astype(np.float32)  # noqa: E731
        cut = int(n_test * 0.3)
        labels = d.labels[:cut] if labelled_validation else np.zeros(cut, dtype=np.int8)
        self.arrays = {"train": scale(d.train), "validation": scale(d.test.iloc[:cut]), "validation_labels": labels}
        self.meta = {"dataset": f"synthetic/seed{seed}", "raw_md5": f"md5-of-seed-{seed}", "validation_fraction": 0.3}
        self.read: list[str] = []

    def __getitem__(self, key):
        if key in self.TAIL:
            raise AssertionError(f"tuning read the test tail: {key}")
        self.read.append(key)
        return self.arrays[key]


def study(name, fixed, space, data, storage, **kw):
    settings = {
        "objective": "vus_pr",
        "n_trials": 6,
        "timeout": None,
        "pruner": "median",
        "seed": 0,
        "storage": storage,
        "label_free": LABEL_FREE,
        "vus_window": 10,
        **kw,
    }
    return run_study(name, fixed, space, data, **settings)


def trials(storage: str, study_name: str):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
