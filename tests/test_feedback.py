"""Operator feedback and remedy ranking, for real: verdicts and outcomes with their audit rows
in the alerts store (SQLite, and PostgreSQL where the package is installed) while the scoring
code writes alerts beside them; the rankers' contract, JSON state and replay; the simulated
operator; and, through the `vigil` command line, verdicts that become the labels of the next
run's threshold search, with the remedy ranker versioned in MLflow."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from support import REPO
from support.servers import prefect_env
from support.workspace import SMALL, VIGIL, fitted_champion, make_workspace, sh, vigil_run

from components.datasets import make_synthetic
from components.detectors import get_detector, load_detector
from components.evaluation import AlertSettings, choose_alert_rule, feedback_steps
from components.feedback import Span, labelled_segments
from components.remedies import (
    RANKERS,
    IncidentContext,
    Observation,
    Remedy,
    applicable,
    get_ranker,
    incident_features,
    ranker_from_dict,
    reward,
)
from components.remedy_simulation import SimulationConfig, default_world, generate_incidents, simulate
from components.thresholds import best_f1_threshold
from tasks.alerts import AUDIT, FEEDBACK, FeedbackError, latest_verdicts, open_store, record_feedback
from tasks.data import Processed
from tasks.remedies import fit_advisor, remedy_settings
from tasks.scoring import _read_in_groups, score_file
from vigil.config import load_config, parse_config

REMEDIES = yaml.safe_load((REPO / "params.yaml").read_text())["remedies"]


def catalogue() -> list[Remedy]:
    return [
        Remedy(r["name"], r["description"], tuple(r.get("kinds", [])), (), tuple(r.get("metrics", [])))
        for r in REMEDIES["catalogue"]
    ]


# --- rankers --------------------------------------------------------------------------------


def _observations(n: int, seed: int = 0) -> list[Observation]:
    cfg = SimulationConfig(n_incidents=n, seed=seed)
    out = []
    rng = np.random.default_rng(seed)
    for inc in generate_incidents(default_world(), cfg):
        arms = applicable(catalogue(), inc.context)
        arm = arms[int(rng.integers(len(arms)))]
        ok = bool(rng.random() < 0.5)
        minutes = float(rng.uniform(5, 60))
        out.append(Observation(inc.id, arm, reward(ok, minutes, 60.0), incident_features(inc.context), ok, minutes))
    return out


@pytest.mark.parametrize("name", sorted(RANKERS))
def test_every_ranker_keeps_its_parameters_and_round_trips_through_json(name):
    import inspect

    cls = RANKERS[name]
    params = {p: v.default for p, v in inspect.signature(cls.__init__).parameters.items() if p != "self"}
    ranker = get_ranker(name, **params)
    assert ranker.get_params() == params  # every parameter an explicit keyword, stored unchanged
    assert not [k for k in vars(ranker) if k.endswith("_")]  # nothing learned before fit
    obs = _observations(150)
    ranker.fit(obs)
    back = ranker_from_dict(json.loads(json.dumps(ranker.to_dict())))
    arms = [r.name for r in catalogue()]
    for o in obs[:20]:
        assert back.rank(o.x, arms, key=o.incident) == ranker.rank(o.x, arms, key=o.incident)
    assert back.to_dict() == ranker.to_dict()


def test_replaying_the_same_feedback_gives_the_same_ranker_whatever_its_order():
    obs = _observations(300, seed=1)
    shuffled = obs[:]
    random.Random(3).shuffle(shuffled)
    a, b = get_ranker("linucb").fit(obs), get_ranker("linucb").fit(shuffled)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    a.fit(obs)  # fit again: starts from nothing, so nothing is counted twice
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def test_a_remedy_applies_only_where_its_catalogue_entry_says():
    ctx = IncidentContext("synthetic", "pca", (("cpu_user", 0.7), ("disk_util", 0.27), ("mem_used", 0.03)), 1.0, 3)
    names = applicable(catalogue(), ctx)
    assert {"restart_service", "scale_out", "kill_runaway_process", "clean_disk"} <= set(names)
    assert "restart_service_maintenance" not in names  # mem_used carries under MIN_SHARE: noise
    assert not {"restart_pool", "route_other_source"} & set(names)  # other source kinds
    assert names == [r.name for r in catalogue() if r.name in names]  # catalogue order


def test_the_default_catalogue_covers_the_simulated_world():
    names = {r.name for r in catalogue()}
    for kind in default_world():
        assert set(kind.outcomes) <= names, kind.name
        best = max(kind.outcomes, key=lambda r: kind.outcomes[r][0] / (1 + kind.outcomes[r][1] / 60))
        ctx = IncidentContext(kind.kind, "pca", tuple((m, 1 / len(kind.metrics)) for m in kind.metrics), 1.0, 12)
        assert best in applicable(catalogue(), ctx), kind.name


def test_the_learned_ranking_beats_catalogue_order_and_random_and_keeps_improving():
    """The simulated operator of benchmarks/remedies.py, 1,000 incidents, two seeds."""
    for seed in (0, 1):
        cfg = SimulationConfig(n_incidents=1000, seed=seed)
        incidents = generate_incidents(default_world(), cfg)
        runs = {
            n: simulate(get_ranker(n), catalogue(), incidents, cfg) for n in ("linucb", "catalogue_order", "random")
        }
        learned = runs["linucb"]
        for other in ("catalogue_order", "random"):
            assert learned["regret"].sum() < 0.5 * runs[other]["regret"].sum(), other
            assert learned["ndcg3"][-200:].mean() > runs[other]["ndcg3"][-200:].mean() + 0.05, other
            assert learned["minutes"].mean() < runs[other]["minutes"].mean(), other
        # it keeps improving with feedback: less regret and a better ranking late than early
        assert learned["regret"][-200:].sum() < 0.5 * learned["regret"][:200].sum()
        assert learned["ndcg3"][-200:].mean() > learned["ndcg3"][:200].mean()


# --- labels from verdicts ------------------------------------------------------------------


def test_verdicts_label_steps_and_merge_their_context():
    times = np.array([f"t{i:03d}" for i in range(100)])
    spans = [
        Span("t010", "t012", "confirmed"),
        Span("t016", "t017", "false_alarm"),
        Span("t050", "t052", "expected"),
        Span("t080", "t081", None),  # not reviewed: left out, exports nothing around it
        Span("t090", "t091", "new_normal"),
    ]
    segments, label, new_normal = labelled_segments(times, spans, context=3)
    assert segments == [(7, 21), (47, 56), (87, 95)]
    assert label[10:13].tolist() == [1, 1, 1] and label[16:18].tolist() == [0, 0]
    assert label[50:53].tolist() == [-1] * 3 and label[80:82].tolist() == [-1, -1]
    assert label[7:10].tolist() == [0, 0, 0]
    assert new_normal.sum() == 2 and new_normal[90:92].tolist() == [1, 1]


def test_a_feedback_file_with_bad_values_is_refused_naming_file_column_and_line(tmp_path):
    from components.datasets import DataError
    from tasks.data import read_feedback

    times = ["2026-01-01T00:00:00.000000", "2026-01-01T00:05:00.000000", "2026-01-01T00:10:00.000000"]
    frame = pd.DataFrame({"segment": 0, "timestamp": times, "cpu_user": [1.0, np.nan, 2.0], "mem_used": 1.0,
                          "label": 0, "new_normal": 0})  # fmt: skip
    frame.to_csv(tmp_path / "web-1.csv", index=False)
    with pytest.raises(
        DataError, match=r"web-1.csv: NaN or infinite values in column\(s\) \['cpu_user'\]; file lines \[3\]"
    ):
        read_feedback(tmp_path, ["cpu_user", "mem_used"])
    # a series scored on other metrics is left out, saying so
    frame.drop(columns=["cpu_user"]).to_csv(tmp_path / "web-1.csv", index=False)
    out = read_feedback(tmp_path, ["cpu_user", "mem_used"])
    assert out["x"] is None and "lacks the columns ['cpu_user']" in out["summary"]["skipped"]["web-1"]


def test_the_threshold_search_pools_validation_and_feedback_labels():
    rng = np.random.default_rng(0)
    val_scores, val_labels = rng.random(200), np.zeros(200, dtype=np.int8)
    det = get_detector("zscore").fit(rng.normal(size=(300, 3)))
    x = rng.normal(size=(120, 3))
    x[40:50] += 8
    labels = np.zeros(120, dtype=np.int8)
    labels[40:50] = 1
    labels[100:110] = -1  # left out
    steps = feedback_steps(det, x, labels, np.array([[0, 60], [60, 120]]))
    assert len(steps.labels) == 110 and steps.labels.sum() == 10 and steps.segments == 2
    raw = AlertSettings(method="best_f1", fallback=("best_f1", "none", 1))
    th = choose_alert_rule(val_scores, val_labels, det.calibration_scores_, raw, feedback=steps)
    expected = best_f1_threshold(np.r_[val_scores, steps.scores], np.r_[val_labels, steps.labels])[0]
    assert th.value == expected and th.rule == "best_f1 on operator feedback" and not th.label_free
    # false alarms alone give no positive label: the label-free rule, saying why
    alarms = feedback_steps(det, x, np.where(labels == 1, 0, labels), np.array([[0, 120]]))
    free = choose_alert_rule(val_scores, val_labels, det.calibration_scores_, raw, feedback=alarms)
    assert free.label_free and "no confirmed anomaly" in free.detail


def test_tuning_measures_trials_on_the_validation_head_and_the_feedback_stretches():
    from components.tuning import tuning_set

    rng = np.random.default_rng(0)
    train, val_x, val_labels = rng.normal(size=(500, 3)), rng.normal(size=(200, 3)), np.zeros(200, dtype=np.int8)
    x, labels = rng.normal(size=(105, 3)), np.zeros(105, dtype=np.int8)
    x[40:50] += 6
    labels[40:50], labels[90:100] = 1, -1
    segments = np.array([[0, 60], [60, 100], [100, 105]])  # the last one is shorter than any window
    common = {"holdout_fraction": 0.2, "n_anomalies": 5, "seed": 0, "min_steps": 10}
    t = tuning_set(train, val_x, val_labels, objective="vus_pr", feedback=(x, labels, segments), **common)
    assert t.used == "vus_pr" and len(t.feedback) == 2  # labelled by the operators: no fall-back to label_free
    assert "operator feedback (90 steps, 2 stretches)" in t.why
    scores, used_labels = t.score(get_detector("zscore").fit(train))
    assert len(scores) == len(used_labels) == 200 + 90 and used_labels.sum() == 10
    # without feedback the same validation head has no label: label_free, as before
    assert tuning_set(train, val_x, val_labels, objective="vus_pr", **common).used == "label_free"


# --- the store ----------------------------------------------------------------------------


def _store_with_incidents(url: str, n: int = 3) -> tuple[sa.Engine, list[int]]:
    from tasks.alerts import INCIDENTS

    engine = open_store(url)
    ids = []
    with engine.begin() as conn:
        for i in range(n):
            row = {
                "source": f"s-{uuid.uuid4().hex[:6]}",
                "start": f"2026-01-01T00:0{i}:00.000000",
                "end": f"2026-01-01T00:0{i}:00.000000",
                "steps": 1,
                "peak_score": 2.0,
                "threshold": 1.0,
                "detector": "pca",
                "model": "m",
                "version": "1",
                "top_metrics": json.dumps([["cpu_user", 1.0]]),
            }
            ids.append(int(conn.execute(sa.insert(INCIDENTS).values(**row)).inserted_primary_key[0]))
    return engine, ids


def test_feedback_is_appended_with_its_audit_row_and_never_overwritten(tmp_path):
    engine, (a, b, _) = _store_with_incidents(f"sqlite:///{tmp_path / 'alerts.db'}")
    names = [r.name for r in catalogue()]
    first = record_feedback(engine, a, "false_alarm", "ana", remedies=names)
    second = record_feedback(
        engine, a, "confirmed", "ben", remedy="kill_runaway_process", resolved=True, minutes=12, remedies=names
    )
    with engine.connect() as conn:
        rows = pd.read_sql(sa.select(FEEDBACK).order_by(FEEDBACK.c.id), conn)
        audit = pd.read_sql(sa.select(AUDIT).order_by(AUDIT.c.id), conn)
        latest = latest_verdicts(conn)
    assert rows["id"].tolist() == [first, second] and rows["verdict"].tolist() == ["false_alarm", "confirmed"]
    assert latest[a]["verdict"] == "confirmed" and b not in latest  # the latest counts; both are kept
    assert audit["row_id"].tolist() == [first, second] and audit["who"].tolist() == ["ana", "ben"]
    assert json.loads(audit["detail"].iloc[1])["remedy"] == "kill_runaway_process"
    # an audit row that cannot be written takes the verdict with it: one transaction
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit'); END")
    with pytest.raises(sa.exc.IntegrityError):
        record_feedback(engine, b, "confirmed", "ana")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FEEDBACK)).scalar() == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"incident": 10**9, "verdict": "confirmed"}, "incident: no incident"),
        ({"verdict": "fixed"}, "verdict: 'fixed' is not one of"),
        ({"verdict": "confirmed", "remedy": "reboot_the_world", "resolved": True}, "remedy: 'reboot_the_world'"),
        ({"verdict": "confirmed", "remedy": "clean_disk"}, "resolved: say whether 'clean_disk'"),
        ({"verdict": "confirmed", "resolved": True}, "remedy: an outcome"),
        ({"verdict": "confirmed", "remedy": "clean_disk", "resolved": True, "minutes": -3}, "minutes: -3"),
        ({"verdict": "confirmed", "who": " "}, "who: give the operator's name"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field_and_nothing_is_stored(tmp_path, kwargs, field):
    engine, (a, *_) = _store_with_incidents(f"sqlite:///{tmp_path / 'alerts.db'}")
    args = {"incident": a, "who": "ana", **kwargs}
    with pytest.raises(FeedbackError, match=field):
        record_feedback(
            engine, args.pop("incident"), args.pop("verdict"), args.pop("who"), remedies=[r.name for r in catalogue()],
            **args,
        )  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FEEDBACK)).scalar() == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    return request.getfixturevalue("postgres_url")


def test_verdicts_written_while_scoring_writes_alerts_lose_nothing(store_url, tmp_path):
    """The scoring code stores 80 files (points, alerts, incidents and their remedy rankings,
    one transaction each) while another thread, on its own connections, records a verdict on
    every incident as it appears and changes some. Every verdict and audit row is there, and
    so is every scored step."""
    data = make_synthetic(seed=3, n_train=600, n_test=2400, n_anomalies=12)
    champion = fitted_champion(data)
    source = f"web-{uuid.uuid4().hex[:6]}"
    landing = tmp_path / "landing"
    (landing / source).mkdir(parents=True)
    frame = data.test.reset_index()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 80)):
        frame.iloc[part].to_csv(landing / source / f"part-{i:03d}.csv", index=False)
    engine = open_store(store_url)
    settings = remedy_settings(parse_config({"remedies": REMEDIES}).remedies, REPO)
    advisor = fit_advisor(engine, settings, "synthetic")
    scoring_done, errors, written, while_scoring = threading.Event(), [], {}, []

    def score_all():
        try:
            files = sorted((landing / source).glob("*.csv"))
            for path, table, problems, passed, _ in _read_in_groups(files, "timestamp", champion.features):
                score_file(
                    engine, champion, landing, source, path, "run-1", table=table, read_problems=problems,
                    suite_passed=passed, keep_values=True, sinks=[advisor], kind="synthetic",
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))
        finally:
            scoring_done.set()

    def give_verdicts():
        writer = open_store(store_url)  # its own pool: its own connections
        try:
            rng = random.Random(0)
            while True:
                finished = scoring_done.is_set()
                with writer.connect() as conn:
                    ids = [
                        r[0] for r in conn.execute(sa.text("select id from incidents where source = :s"), {"s": source})
                    ]
                for inc in ids:
                    if inc in written and rng.random() > 0.1:
                        continue
                    verdict = rng.choice(["confirmed", "false_alarm", "expected"])
                    fid = record_feedback(writer, inc, verdict, "night-shift", remedy="restart_service",
                                          resolved=rng.random() < 0.5, minutes=rng.uniform(1, 30))  # fmt: skip
                    written.setdefault(inc, []).append((fid, verdict))
                    if not scoring_done.is_set():
                        while_scoring.append(fid)
                if finished:
                    return
                time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            writer.dispose()

    threads = [threading.Thread(target=score_all), threading.Thread(target=give_verdicts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert len(while_scoring) >= 5, "the writers did not overlap"
    with engine.connect() as conn:
        incidents = pd.read_sql(sa.text("select id from incidents where source = :s"), conn, params={"s": source})
        feedback = pd.read_sql(
            sa.select(FEEDBACK).where(FEEDBACK.c.incident.in_(incidents["id"].tolist())).order_by(FEEDBACK.c.id), conn
        )
        audit = pd.read_sql(sa.select(AUDIT).where(AUDIT.c.row_id.in_(feedback["id"].tolist())), conn)
        points = conn.execute(sa.text("select count(*) from points where source = :s"), {"s": source}).scalar()
        ranked = conn.execute(
            sa.text(
                "select count(*) from remedy_rankings where incident in (select id from incidents where source = :s)"
            ),
            {"s": source},
        ).scalar()
        latest = latest_verdicts(conn, incidents["id"].tolist())
    assert points == len(frame)  # pca reads no steps after a step: every one is final
    mine = sorted(fid for rows in written.values() for fid, _ in rows)
    assert sorted(feedback["id"]) == mine and sorted(audit["row_id"]) == mine
    assert set(written) == set(incidents["id"]) and ranked == len(incidents)
    assert {i: latest[i]["verdict"] for i in written} == {i: rows[-1][1] for i, rows in written.items()}
    engine.dispose()


# --- through the command line ---------------------------------------------------------------


# the threshold these checks recompute: best F1 on the raw scores (no rule comparison, no smoothing)
RAW_BEST_F1 = {"method": "best_f1", "fallback": {"rule": "best_f1", "smoothing": "none", "window": 1}}
# and every run of flags its own incident: the model, trained on seed 0, flags much of seed 7's
# series, which merging would make one long incident; this test reviews several
PARAMS = {**SMALL, "remedies": REMEDIES, "threshold": RAW_BEST_F1, "incidents": {"merge_gap": 1, "min_steps": 1}}


def _labels_by_time(data) -> set[str]:
    ts = data.test.index.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return set(ts[data.labels == 1])


@pytest.mark.slow
def test_feedback_labels_reach_the_next_threshold_search(tmp_path):
    """A champion scores another series of the same metrics; operators give verdicts (one
    through `vigil feedback record`, with a remedy); the next `vigil run` exports them, and
    every detector's threshold is the best F1 over the validation head and those labelled
    steps, recomputed here from the saved models. A span marked new normal joins train. The
    remedy ranker is registered in MLflow once per distinct feedback."""
    ws = make_workspace(tmp_path, PARAMS)
    vigil_run(ws, "--new-data-version")
    before = json.loads((ws / "reports" / "metrics.json").read_text())
    other = make_synthetic(seed=7, n_train=800, n_test=1200, n_anomalies=8)
    arriving = other.test.reset_index()
    arriving["timestamp"] = arriving["timestamp"] + pd.Timedelta(days=30)  # later than the training data
    path = tmp_path / "arriving.csv"
    arriving.to_csv(path, index=False)
    env = prefect_env(tmp_path)
    out = sh(VIGIL, "score", str(path), "--source", "web-7", cwd=ws, env=env)
    assert "ranked by the untrained remedy ranker (no outcome reported yet)" in out.stdout, out.stdout
    url = f"sqlite:///{ws / '.vigil' / 'alerts.db'}"
    engine = open_store(url)
    incidents = pd.read_sql("select * from incidents order by id", engine)
    assert len(incidents) >= 3
    shifted = {
        (pd.Timestamp(t) + pd.Timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.%f") for t in _labels_by_time(other)
    }

    def truly_anomalous(inc) -> bool:
        steps = arriving["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        inside = steps[(steps >= inc["start"]) & (steps <= inc["end"])]
        return bool(set(inside) & shifted)

    first = incidents.iloc[0]
    show = sh(VIGIL, "feedback", "show", str(first["id"]), cwd=ws, env=env).stdout
    assert "remedies (untrained linucb: no outcome reported yet), best first:" in show and "1. " in show, show
    remedy = show.split("1. ")[1].split(":")[0]
    verdict = "confirmed" if truly_anomalous(first) else "false_alarm"
    out = sh(VIGIL, "feedback", "record", str(first["id"]), verdict, "--remedy", remedy, "--resolved", "yes",
             "--minutes", "9", "--who", "ana", cwd=ws, env=env)  # fmt: skip
    assert f"recorded feedback 1 on incident {first['id']}: {verdict}; {remedy} resolved it in 9 min (by ana)" in (
        out.stdout
    )
    assert "remedy ranker vigil-remedies version 1 (1 outcome(s))" in out.stdout
    refused = sh(VIGIL, "feedback", "record", str(first["id"]), "confirmed", "--remedy", "no_such_fix",
                 "--resolved", "no", cwd=ws, env=env, check=False)  # fmt: skip
    assert refused.returncode == 2 and "remedy: 'no_such_fix' is not in the catalogue" in refused.stderr
    fresh = incidents.iloc[-1]
    for _, inc in incidents.iloc[1:-1].iterrows():
        record_feedback(engine, int(inc["id"]), "confirmed" if truly_anomalous(inc) else "false_alarm", "script")
    record_feedback(engine, int(fresh["id"]), "new_normal", "script")
    # the ranker: replaying the same feedback registers nothing new
    import mlflow

    from tasks.remedies import current_advisor

    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}")
    settings = remedy_settings(load_config(ws / "params.yaml").remedies, ws)
    tracking = f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}"
    again = current_advisor(engine, tracking, ws / "mlflow" / "artifacts", settings, "synthetic")
    assert again.version == "1" and len(client.search_model_versions("name='vigil-remedies'")) == 1
    engine.dispose()

    out = vigil_run(ws)
    after = json.loads((ws / "reports" / "metrics.json").read_text())
    meta = json.loads((ws / "data" / "processed" / "meta.json").read_text())
    record = json.loads((ws / "data" / "feedback" / "vigil-synthetic-seed0" / "feedback.json").read_text())
    assert (
        len(record["incidents"]) == len(incidents)
        and meta["feedback"]["series"]["web-7"]["new_normal"] == fresh["steps"]
    )
    exported = pd.read_csv(ws / "data" / "feedback" / "vigil-synthetic-seed0" / "web-7.csv")
    assert (exported["label"] == 1).any() and (exported["label"] == 0).any()
    data = Processed(ws / "data" / "processed")
    assert len(data["train"]) == 800 + fresh["steps"]  # the new normal joined train
    for name in ("zscore", "pca"):
        rule = after[name]["threshold_rule"]
        assert rule == "best_f1 on validation labels and operator feedback", rule
        assert "operator feedback:" in after[name]["threshold_detail"]
        det = load_detector(ws / "models" / f"{name}.npz")
        steps = feedback_steps(det, data["feedback"], data["feedback_labels"], data["feedback_segments"])
        scores = np.r_[det.score(data["validation"]), steps.scores]
        labels = np.r_[data["validation_labels"], steps.labels]
        assert after[name]["validation"]["threshold"] == pytest.approx(best_f1_threshold(scores, labels)[0])
        assert before[name]["threshold_rule"] == "best_f1 on validation labels"
