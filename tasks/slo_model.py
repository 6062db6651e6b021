"""The MLflow pyfunc model of an SLO-violation predictor, with its threshold and lead window.

``predict(DataFrame of per-second aggregates, oldest first)`` returns one row per second:
``score``, ``predicted`` (score >= threshold: a violation expected within ``lead`` seconds)
and ``top_signals``. Each second is scored with the seconds before it in the frame, as the
live predictor scores it with the seconds before it on the topic.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

TOP_K = 3


class VigilSLOModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from components.slo.predictors import load_predictor

        bundle = Path(context.artifacts["bundle"])
        meta = json.loads((bundle / "meta.json").read_text())
        self.threshold = float(meta["threshold"])
        self.lead = int(meta["lead"])
        self.predictor = load_predictor(bundle / "predictor.npz")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from components.slo.predictors import SIGNALS, frame_signals

        missing = [s for s in SIGNALS if s not in model_input.columns]
        if missing:
            raise ValueError(f"input lacks the signals {missing} (the model reads {list(SIGNALS)})")
        x = frame_signals(model_input)
        scores, contrib = self.predictor.score_with_contributions(x)
        top = np.argsort(-contrib, axis=1)[:, :TOP_K]
        return pd.DataFrame(
            {
                "score": scores,
                "predicted": (scores >= self.threshold).astype(np.int8),
                "top_signals": [",".join(SIGNALS[i] for i in row) for row in top],
            },
            index=model_input.index,
        )


# Models from code: MLflow loads this file to rebuild the model (no pickled Python object).
mlflow.models.set_model(VigilSLOModel())
