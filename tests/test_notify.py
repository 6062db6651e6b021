"""Incidents to a real Alertmanager (Debian's prometheus-alertmanager, on a loopback port in a
temporary folder) and through it to a webhook receiver that records what it is sent; and to
that receiver directly as Vigil's webhook sink. The store is written as scoring writes it
(`write_steps`, the outbox sink in the same transaction, the source's row)."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from support.servers import Receiver, free_port, running_alertmanager
from support.store import scored

from tasks.alerts import NOTIFICATIONS, open_store
from tasks.notify import Notifiers, Outbox, deliver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def alertmanager(tmp_path, receiver):
    with running_alertmanager(tmp_path, receiver, free_port()) as url:
        yield url


def am_get(base: str, path: str):
    return json.loads(urllib.request.urlopen(base + path, timeout=10).read())


def notifications(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(NOTIFICATIONS).order_by(NOTIFICATIONS.c.id)).mappings()]


@pytest.mark.slow
def test_an_incident_fires_once_through_alertmanager_and_resolves_when_it_closes(tmp_path, alertmanager, receiver):
    engine = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    notify = Notifiers(alertmanager=alertmanager, page_url="http://vigil.example:8050")
    [incident] = scored(engine, "web-1", [0.1] * 10 + [3.0] * 4 + [0.1], Outbox(notify))  # still open: within merge_gap
    assert deliver(engine, notify) == {"sent": 1, "failed": 0}
    [firing] = receiver.wait_for(1)
    assert firing["status"] == "firing" and len(firing["alerts"]) == 1
    alert = firing["alerts"][0]
    assert alert["labels"] == {"alertname": "VigilIncident", "series": "web-1", "detector": "zscore",
                               "model": "vigil-test", "model_version": "3", "incident": str(incident),
                               "top_metrics": "cpu,mem"}  # fmt: skip
    assert alert["annotations"]["page"] == f"http://vigil.example:8050/?source=web-1&incident={incident}"
    assert "web-1: anomaly score 3 over threshold 1" in alert["annotations"]["summary"]
    assert alert["startsAt"].startswith("2026-12-01T00:10:00")

    assert deliver(engine, notify) == {"sent": 1, "failed": 0}  # still open: re-sent, as Prometheus does
    time.sleep(3)
    assert len(receiver.bodies) == 1  # ... and Alertmanager deduplicates it: one notification

    scored(engine, "web-1", [0.1] * 10, Outbox(notify))  # quiet past merge_gap: the incident is closed
    assert deliver(engine, notify) == {"sent": 1, "failed": 0}
    resolved = receiver.wait_for(2)[-1]
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["labels"]["incident"] == str(incident)
    assert resolved["alerts"][0]["endsAt"].startswith("2026-12-01T00:13:00")  # its last flagged step
    assert [n["state"] for n in notifications(engine)] == ["resolved"]
    assert deliver(engine, notify) == {"sent": 0, "failed": 0}  # done: nothing more is sent


@pytest.mark.slow
def test_a_silence_in_alertmanager_suppresses_vigils_incident(tmp_path, alertmanager, receiver):
    engine = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    notify = Notifiers(alertmanager=alertmanager)
    start = datetime.now(UTC)
    silence = {"matchers": [{"name": "series", "value": "db-2", "isRegex": False, "isEqual": True}],
               "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=1)).isoformat(),
               "createdBy": "test", "comment": "maintenance of db-2"}  # fmt: skip
    request = urllib.request.Request(alertmanager + "/api/v2/silences", data=json.dumps(silence).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=10)
    scored(engine, "db-2", [0.1] * 5 + [2.0] * 3 + [0.1], Outbox(notify))
    [loud] = scored(engine, "web-1", [0.1] * 5 + [2.0] * 3 + [0.1], Outbox(notify))
    assert deliver(engine, notify) == {"sent": 2, "failed": 0}
    states = {a["labels"]["series"]: a["status"]["state"] for a in am_get(alertmanager, "/api/v2/alerts")}
    assert states == {"db-2": "suppressed", "web-1": "active"}
    [body] = receiver.wait_for(1)
    time.sleep(3)  # what the silence holds back never comes
    assert len(receiver.bodies) == 1 and body["alerts"][0]["labels"]["incident"] == str(loud)


@pytest.mark.slow
def test_a_failed_delivery_is_retried_next_run_and_loses_or_duplicates_nothing(tmp_path, receiver):
    """Alertmanager down: the run records the failure and leaves the incident as it was; the
    next run, with it up, delivers the incident once."""
    engine = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    port = free_port()
    notify = Notifiers(alertmanager=f"http://127.0.0.1:{port}", timeout_seconds=2, attempts=2)
    [incident] = scored(engine, "web-1", [0.1] * 5 + [2.0] * 3 + [0.1], Outbox(notify))
    with engine.connect() as conn:
        before = [dict(r) for r in conn.execute(sa.text("SELECT * FROM incidents")).mappings()]
    assert deliver(engine, notify) == {"sent": 0, "failed": 1}
    [pending] = notifications(engine)
    assert pending["state"] == "pending" and pending["attempts"] == 1 and f"127.0.0.1:{port}" in pending["last_error"]
    with running_alertmanager(tmp_path, receiver, port):
        assert deliver(engine, notify) == {"sent": 1, "failed": 0}
        [body] = receiver.wait_for(1)
        time.sleep(2)
        assert len(receiver.bodies) == 1 and body["alerts"][0]["labels"]["incident"] == str(incident)
    with engine.connect() as conn:
        assert [dict(r) for r in conn.execute(sa.text("SELECT * FROM incidents")).mappings()] == before
    [sent] = notifications(engine)
    assert sent["state"] == "firing" and sent["attempts"] == 0 and sent["last_error"] is None


def test_the_webhook_sink_gets_each_incident_firing_then_resolved(tmp_path, receiver):
    """No Alertmanager: Vigil's own webhook sink. An incident that opened and closed between
    two runs is still sent firing first (it pages), then resolved at the next run."""
    engine = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    notify = Notifiers(webhook=receiver.url)
    [incident] = scored(engine, "web-1", [0.1] * 5 + [2.0] * 3 + [0.1] * 10, Outbox(notify))  # opened and closed
    assert deliver(engine, notify) == {"sent": 1, "failed": 0}
    assert deliver(engine, notify) == {"sent": 1, "failed": 0}
    assert deliver(engine, notify) == {"sent": 0, "failed": 0}
    bodies = receiver.wait_for(2)
    assert [(b["status"], b["incident"]["id"], b["incident"]["source"]) for b in bodies] == [
        ("firing", incident, "web-1"),
        ("resolved", incident, "web-1"),
    ]
    assert bodies[0]["incident"]["top_metrics"] == [["cpu", 0.75], ["mem", 0.25]]


def test_incidents_raised_before_a_notifier_was_configured_are_not_sent(tmp_path, receiver):
    """The outbox holds what was raised while a notifier was configured: turning one on does
    not flood it with the store's history."""
    engine = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    scored(engine, "web-1", [0.1] * 5 + [2.0] * 3 + [0.1], Outbox(Notifiers()))  # no notifier: nothing queued
    notify = Notifiers(webhook=receiver.url)
    assert deliver(engine, notify) == {"sent": 0, "failed": 0}
    assert notifications(engine) == [] and receiver.bodies == []


def test_notify_urls_are_checked_when_params_are_parsed():
    from pydantic import ValidationError

    from vigil.config import NotifyConfig

    assert NotifyConfig(alertmanager="http://127.0.0.1:9093").alertmanager == "http://127.0.0.1:9093"
    for bad in ("file:///etc/passwd", "http://user:pw@host:9093", "127.0.0.1:9093", "http://host/a b", "http://h/?q=1"):
        with pytest.raises(ValidationError):
            NotifyConfig(alertmanager=bad)


def test_a_predicted_slo_violation_reaches_the_webhook_too(tmp_path, receiver):
    """The SLO stream's predictor keeps its predictions in the same store: an incident it raises
    is queued in that transaction and delivered as scoring's are."""
    from tasks.slo import SIGNALS, PredictionStore

    notify = Notifiers(webhook=receiver.url, page_url="http://vigil.example:8050")
    store = PredictionStore(f"sqlite:///{tmp_path / 'alerts.db'}", "slo/aggregate", "vigil-slo", "2", "forecast", 0.5,
                            notify=notify)  # fmt: skip
    n, k = 12, len(SIGNALS)
    scores = np.array([0.1] * 4 + [0.9] * 4 + [0.1] * 4)
    store.write(list(range(1_790_000_000, 1_790_000_000 + n)), scores, np.full((n, k), 1 / k), np.ones((n, k)))
    [firing] = receiver.wait_for(1)
    assert firing["status"] == "firing" and firing["incident"]["source"] == "slo/aggregate"
    assert firing["incident"]["detector"] == "forecast" and "source=slo%2Faggregate" in firing["page"]
