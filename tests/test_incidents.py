"""The case a new user tried: `vigil run` on the embedded synthetic default, then `vigil score`
of another seeded 3,000-step series with 12 anomalies. Before alert rules it raised 27
incidents, one 33-step anomaly became 6 and six were one step long; with the model's rule
(smoothing chosen on validation, flags fewer than `incidents.merge_gap` steps apart merged,
shorter than `incidents.min_steps` not raised) each anomaly must be one incident."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from support.workspace import drop, make_workspace, table, vigil_run
from support.workspace import vigil_score as score

from components.datasets import DatasetSource
from components.datasets.base import ranges_from_labels
from components.datasets.synthetic_layout import generate

# the embedded default's dataset and incident rule (params.yaml), cheap detectors
PARAMS = {
    "dataset": {"kind": "synthetic", "root": "data/raw/synthetic", "synthetic": {"seed": 0}},
    "registry": {"tracking_uri": "sqlite:///mlflow/mlflow.db", "artifact_root": "mlflow/artifacts"},
}


@pytest.mark.slow
def test_each_anomaly_of_another_seeded_series_is_one_incident(tmp_path):
    ws = make_workspace(tmp_path, PARAMS)
    vigil_run(ws, "--new-data-version")
    other = tmp_path / "seed1"
    generate(
        DatasetSource(
            "synthetic",
            other,
            "synthetic",
            {"seed": 1, "n_train": 500, "n_test": 3000, "n_metrics": 12, "n_anomalies": 12, "period": 288},
        )
    )
    frame = pd.read_csv(other / "test.csv")
    labels = frame.pop("label").to_numpy()
    events = ranges_from_labels(labels)
    assert len(events) == 12
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["scoring"].update(
        {"landing": str(tmp_path / "landing"), "store": f"sqlite:///{tmp_path / 'alerts.db'}", "settle_seconds": 0}
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    drop(frame, tmp_path / "landing", "seed1", "test")
    score(ws, tmp_path / "params.yaml")
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    incidents = table(url, "incidents")
    raised = incidents[incidents["raised"] == 1]
    times = pd.to_datetime(frame["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").tolist()
    position = {t: i for i, t in enumerate(times)}
    spans = [(position[s], position[e]) for s, e in zip(raised["start"], raised["end"])]
    on = {k: [j for j, (s, e) in enumerate(spans) if s < b and e >= a] for k, (a, b) in enumerate(events)}
    summary = json.dumps({"incidents": spans, "events": events, "on_event": on})
    assert len(raised) <= 15, summary
    assert all(len(v) == 1 for v in on.values()), summary  # each anomaly caught, in one incident
