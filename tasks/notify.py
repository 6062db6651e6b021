"""Incidents to the operator's alerting: Alertmanager (its API v2) and any webhook.

An outbox: each raised incident is queued for each notifier in the store's transaction that
raised it (`Outbox`, a `tasks.alerts.Sink`), so no incident is stored without its delivery
owed; after the scoring run, `deliver` sends what is owed and records how it went, touching
nothing else in the store. A delivery that fails is tried again at the next run.

What is sent, per incident and notifier:
- while the incident is open (its source's stream may still extend it): **firing**, at every
  run, as Prometheus re-sends its alerts; Alertmanager holds it for ``firing_minutes`` unless
  it hears again, so a Vigil that stopped leaves nothing firing for ever;
- once it is closed: **resolved**, once (``endsAt``: its last step). One that opened and closed
  between two runs is first sent firing, then resolved at the next run, so it still pages.

Alertmanager deduplicates on the labels, which are those of the first delivery, kept with the
notification: grouping, inhibition and silences apply to Vigil's incidents as to any alert.
A webhook is sent each change of state at least once (a run that dies between sending and
recording sends it again); its JSON names the incident and the state, for a receiver to
deduplicate.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import sqlalchemy as sa

from components.text import first_line

from . import run_logger
from .alerts import INCIDENTS, queue_notifications, record_delivery, undelivered

SINKS = ("alertmanager", "webhook")
ALERT_NAME = "VigilIncident"
TOP_LABELLED = 3  # top metrics named in the labels


@dataclass(frozen=True)
class Notifiers:
    """params.yaml's ``notify`` as plain values (`notifiers`)."""

    alertmanager: str | None = None
    webhook: str | None = None
    page_url: str = "http://127.0.0.1:8050"
    firing_minutes: float = 20.0
    timeout_seconds: float = 10.0
    attempts: int = 3

    @property
    def sinks(self) -> list[str]:
        return [s for s in SINKS if getattr(self, s)]


def notifiers(section) -> Notifiers | None:
    """The ``notify`` section as `Notifiers`, or None where it names no notifier."""
    n = Notifiers(
        section.alertmanager,
        section.webhook,
        section.page_url,
        section.firing_minutes,
        section.timeout_seconds,
        section.attempts,
    )
    return n if n.sinks else None


class Outbox:
    """The sink that queues each raised incident for every configured notifier, in the
    transaction that raised it."""

    def __init__(self, notify: Notifiers):
        self.notify = notify

    def incidents_raised(self, conn: sa.Connection, incidents: list[int], kind: str) -> None:
        rows = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id.in_(incidents))).mappings()
        queue_notifications(conn, {r["id"]: labels({**r, "top_metrics": json.loads(r["top_metrics"])}) for r in rows},
                            self.notify.sinks)  # fmt: skip


def _utc(stamp: str) -> datetime:
    """A stored step time (UTC, without a zone) as an aware datetime."""
    t = datetime.fromisoformat(stamp)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_link(page_url: str, inc: dict) -> str:
    """The live page opened on the incident's series and the incident."""
    return f"{page_url.rstrip('/')}/?source={quote(inc['source'], safe='')}&incident={inc['id']}"


def summary(inc: dict) -> str:
    tops = ", ".join(f"{m} ({share:.0%})" for m, share in inc["top_metrics"][:TOP_LABELLED])
    return (
        f"{inc['source']}: anomaly score {inc['peak_score']:.4g} over threshold {inc['threshold']:.4g} "
        f"for {inc['steps']} steps from {inc['start']}; top metrics {tops}"
    )


def labels(inc: dict) -> dict[str, str]:
    """What identifies the incident to Alertmanager (routing, grouping, silences)."""
    return {
        "alertname": ALERT_NAME,
        "series": inc["source"],
        "detector": inc["detector"],
        "model": inc["model"],
        "model_version": str(inc["version"]),
        "incident": str(inc["id"]),
        "top_metrics": ",".join(m for m, _ in inc["top_metrics"][:TOP_LABELLED]),
    }


def alertmanager_alert(inc: dict, state: str, notify: Notifiers, now: datetime) -> dict:
    """One alert of Alertmanager's API v2 (``POST /api/v2/alerts``)."""
    link = page_link(notify.page_url, inc)
    starts = _utc(inc["start"])
    if state == "firing":
        ends = now + timedelta(minutes=notify.firing_minutes)
    else:  # its last step; never after now (a clock ahead would keep it firing), never before its start
        ends = max(starts, min(_utc(inc["end"]), now))
    return {
        "labels": inc["labels"],
        "annotations": {"summary": summary(inc), "page": link, "peak_score": f"{inc['peak_score']:.6g}"},
        "startsAt": _rfc3339(starts),
        "endsAt": _rfc3339(ends),
        "generatorURL": link,
    }


def webhook_body(inc: dict, state: str, notify: Notifiers) -> dict:
    keys = ("id", "source", "start", "end", "steps", "peak_score", "threshold", "detector", "model", "version")
    return {
        "version": 1,
        "status": state,
        "incident": {**{k: inc[k] for k in keys}, "top_metrics": inc["top_metrics"]},
        "summary": summary(inc),
        "page": page_link(notify.page_url, inc),
    }


def post_json(url: str, body, timeout: float, attempts: int) -> str | None:
    """POST ``body`` as JSON, tried up to ``attempts`` times (0.5 s, 1 s, ... apart); None when
    it was accepted (2xx), else why not, on one line."""
    data = json.dumps(body).encode()
    why = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return None
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code} {exc.reason}: {exc.read(300).decode(errors='replace')}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # refused as it is: sending it again would not help
        except (OSError, ValueError) as exc:
            why = str(getattr(exc, "reason", exc))
    return first_line(f"{url}: {why}")[:500]


def _next_state(row: dict) -> str:
    """Open: firing. Closed: resolved where firing was delivered, else firing first."""
    return "firing" if row["open"] or row["state"] == "pending" else "resolved"


def deliver(engine: sa.Engine, notify: Notifiers, now: datetime | None = None) -> dict[str, int]:
    """Send every notification owed (see the module docstring) and record each outcome.
    Returns how many were sent and how many failed (to be sent again next run)."""
    log = run_logger()
    counts = {"sent": 0, "failed": 0}
    for sink in notify.sinks:
        with engine.begin() as conn:
            rows = undelivered(conn, sink)
        if not rows:
            continue
        moment = now or datetime.now(UTC)
        outcomes: list[tuple[dict, str, str | None]] = []
        if sink == "alertmanager":  # one request for all: Alertmanager takes a list
            body = [alertmanager_alert(r, _next_state(r), notify, moment) for r in rows]
            error = post_json(notify.alertmanager.rstrip("/") + "/api/v2/alerts", body, notify.timeout_seconds,
                              notify.attempts)  # fmt: skip
            outcomes = [(r, _next_state(r), error) for r in rows]
        else:
            for r in rows:
                error = post_json(notify.webhook, webhook_body(r, _next_state(r), notify), notify.timeout_seconds,
                                  notify.attempts)  # fmt: skip
                outcomes.append((r, _next_state(r), error))
                if error:  # the receiver is down: the rest wait for the next run too
                    outcomes += [(rest, _next_state(rest), error) for rest in rows[len(outcomes) :]]
                    break
        with engine.begin() as conn:
            for row, state, error in outcomes:
                record_delivery(conn, row["notification"], state, error)
        failed = sum(e is not None for _, _, e in outcomes)
        counts["sent"] += len(outcomes) - failed
        counts["failed"] += failed
        if failed:
            log.warning(f"notify {sink}: {failed} of {len(outcomes)} not delivered, sent again next run: "
                        f"{next(e for _, _, e in outcomes if e)}")  # fmt: skip
    return counts
