"""The MLflow pyfunc model that bundles scaler, detector (with its windowing) and alert rule.

``predict(DataFrame of raw metrics, rows in time order)`` returns one row per input row:
``score`` (the detector's), ``alert_score`` (smoothed as the model's rule says), ``flag``
(alert score >= threshold), ``incident`` (1, 2, ... for the rows of each raised incident the
rule finds in this input, flagged or inside it; 0 elsewhere) and ``top_metrics`` (the three
metrics contributing most, by name). The rule is the one evaluation measured
(`components.alerting.AlertRule`).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

TOP_K = 3


class VigilAnomalyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from components.detectors import load_detector
        from components.preprocessing import Scaler

        bundle = Path(context.artifacts["bundle"])
        meta = json.loads((bundle / "meta.json").read_text())
        self.features = meta["features"]
        from components.alerting import AlertRule

        # a bundle written before alert rules holds its threshold only
        self.rule = AlertRule.from_dict(meta.get("alert_rule") or {"threshold": float(meta["threshold"])})
        self.threshold = self.rule.threshold
        self.scaler = Scaler.from_dict(meta["scaler"])
        self.detector = load_detector(bundle / "detector.npz")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [f for f in self.features if f not in model_input.columns]
        if missing:
            raise ValueError(
                f"input lacks the metrics {missing} (the model reads {len(self.features)}: {self.features})"
            )
        raw = model_input[self.features].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(raw)
        if bad.any():  # NaN and inf alike: the scaler would clip an inf into a plausible-looking value
            rows, cols = np.nonzero(bad)
            raise ValueError(
                f"input holds {bad.sum()} NaN or infinite values in column(s) "
                f"{sorted({self.features[c] for c in cols})}, at rows {model_input.index[np.unique(rows)][:5].tolist()}"
            )
        x = self.scaler.transform(raw)
        scores, contrib = self.detector.score_and_contributions(x)
        top = np.argsort(-contrib, axis=1)[:, :TOP_K]
        names = np.asarray(self.features)[top]
        alert = self.rule.smoothed(scores)
        incident = np.zeros(len(scores), dtype=np.int64)
        for k, inc in enumerate((i for i in self.rule.incidents(scores) if i.raised), start=1):
            incident[inc.start : inc.end + 1] = k
        return pd.DataFrame(
            {
                "score": scores,
                "alert_score": alert,
                "flag": (alert >= self.threshold).astype(np.int8),
                "incident": incident,
                "top_metrics": [",".join(row) for row in names],
            },
            index=model_input.index,
        )


# Models from code: MLflow loads this file to rebuild the model (no pickled Python object).
mlflow.models.set_model(VigilAnomalyModel())
