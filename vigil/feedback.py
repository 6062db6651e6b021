"""`vigil feedback`: operators' verdicts on incidents, the remedies they applied and what
came of it, into the alerts store; the remedies proposed for an incident; the feedback
dataset the next run learns from (DVC stage ``feedback``).

    vigil feedback record INCIDENT VERDICT [--remedy NAME --resolved yes|no --minutes N] [--note T] [--who NAME]
    vigil feedback show INCIDENT      # the incident, its verdicts over time, its remedies ranked and why
    vigil feedback export             # the store's verdicts as labels: data/feedback/<model>/<series>.csv

The DVC stage runs the export alone: ``vigil stage feedback``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from components.text import printable
from tasks.alerts import (
    INCIDENTS,
    VERDICTS,
    FeedbackError,
    feedback_of,
    open_store,
    rankings_of,
    record_feedback,
    store_exists,
)
from tasks.data import prepared_kind
from tasks.remedies import RemedySettings, current_advisor, remedy_settings
from tasks.urls import storage_url
from vigil.config import Config, ConfigError, load_config
from vigil.entry import run_entry
from vigil.stages.feedback import export_summary
from vigil.workspace import Workspace


def record(args: argparse.Namespace) -> str:
    cfg = load_config(args.params)
    ws = Workspace.at(".")
    settings = remedy_settings(cfg.remedies, ws.root)
    store = storage_url(cfg.scoring.store, ws.root)
    if not store_exists(store):
        raise ConfigError(f"scoring.store: {store} does not exist yet: score something first (vigil score)")
    who = args.who or cfg.feedback.who or getpass.getuser()
    engine = open_store(store)
    try:
        fid = record_feedback(
            engine,
            args.incident,
            args.verdict,
            who,
            remedy=args.remedy,
            resolved=args.resolved,
            minutes=args.minutes,
            note=args.note,
            remedies=settings.names,
        )
        advisor = update_ranker(cfg, ws, engine, settings)
    finally:
        engine.dispose()
    outcome = ""
    if args.remedy:
        took = f" in {args.minutes:g} min" if args.minutes is not None else ""
        outcome = f"; {args.remedy} {'resolved it' if args.resolved else 'did not resolve it'}{took}"
    return (
        f"recorded feedback {fid} on incident {args.incident}: {args.verdict}{outcome} (by {who}); "
        f"remedy ranker {settings.model_name} version {advisor.version} ({len(advisor.observations)} outcome(s))"
    )


def update_ranker(cfg: Config, ws: Workspace, engine, settings: RemedySettings):
    """The ranker for the feedback now in force, registered where that feedback is new."""
    tracking = storage_url(cfg.registry.tracking_uri, ws.root)
    return current_advisor(
        engine, tracking, ws.root / cfg.registry.artifact_root, settings, prepared_kind(ws.processed, cfg.dataset.kind)
    )


def show(args: argparse.Namespace) -> str:
    import sqlalchemy as sa

    cfg = load_config(args.params)
    store = storage_url(cfg.scoring.store, Workspace.at(".").root)
    if not store_exists(store):
        raise ConfigError(f"scoring.store: {store} does not exist yet")
    engine = open_store(store)
    try:
        with engine.connect() as conn:
            inc = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id == args.incident)).mappings().first()
            if inc is None:
                raise FeedbackError(f"incident: no incident {args.incident} in the alerts store")
            history = feedback_of(conn, args.incident)
            ranking = rankings_of(conn, [args.incident]).get(args.incident)
    finally:
        engine.dispose()
    top = ", ".join(f"{m} {s:.0%}" for m, s in json.loads(inc["top_metrics"]))
    lines = [
        f"incident {inc['id']} on {inc['source']}: {inc['start']} to {inc['end']}, {inc['steps']} step(s), "
        f"peak {inc['peak_score']:.4g} (threshold {inc['threshold']:.4g}), {inc['detector']} v{inc['version']}",
        f"  top metrics: {top}",
    ]
    for f in history:
        acted = ""
        if f["remedy"]:
            took = f" in {f['minutes']:g} min" if f["minutes"] is not None else ""
            acted = f", {f['remedy']} {'resolved it' if f['resolved'] else 'did not resolve it'}{took}"
        lines.append(f"  {f['at']} {f['who']}: {f['verdict']}{acted}")
    if not history:
        lines.append("  no verdict yet")
    if ranking is None:
        lines.append("  no remedy ranking stored (scored before remedies were ranked)")
    else:
        v = ranking["ranker_version"]
        by = f"{ranking['ranker']} version {v}" if v else f"untrained {ranking['ranker']}: no outcome reported yet"
        lines.append(f"  remedies ({by}), best first:")
        for k, r in enumerate(ranking["ranking"], 1):
            why = f"tried {r['tried']}x, resolved {r['resolved']}x"
            like = "; ".join(
                f"#{p['incident']} {'resolved' if p['resolved'] else 'not resolved'}" for p in r["like_this"]
            )
            lines.append(f"    {k}. {r['remedy']}: {r['description']} ({why}{'; like this: ' + like if like else ''})")
        if not ranking["ranking"]:
            lines.append("    none in the catalogue applies")
    return "\n".join(lines)


def _yes_no(value: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "y", "true", "1"):
        return True
    if v in ("no", "n", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r}: say yes or no")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml")
    sub = parser.add_subparsers(dest="feedback_command", required=True)
    rec = sub.add_parser("record", help="a verdict on an incident, and the remedy applied with its outcome")
    rec.add_argument("incident", type=int, help="the incident's id (vigil web, or vigil feedback show)")
    rec.add_argument("verdict", choices=VERDICTS)
    rec.add_argument("--remedy", help="the catalogue remedy applied (remedies.catalogue)")
    rec.add_argument("--resolved", type=_yes_no, help="yes or no: did the remedy resolve the incident")
    rec.add_argument("--minutes", type=float, help="minutes from applying it to resolution (or spent on it)")
    rec.add_argument("--note", help="free text kept with the verdict")
    rec.add_argument("--who", help="the operator (default: feedback.who, else the login name)")
    shw = sub.add_parser("show", help="an incident, its verdicts and its remedies ranked, with why")
    shw.add_argument("incident", type=int)
    sub.add_parser("export", help="the verdicts as labels of the next run: feedback.folder (DVC stage feedback)")


def run(args: argparse.Namespace) -> int:
    def body() -> str:
        if args.feedback_command == "record":
            return record(args)
        if args.feedback_command == "show":
            return show(args)
        cfg = load_config(args.params)
        from flows.feedback_export import export_flow  # here: building the command tree loads no flow

        return export_summary(export_flow(cfg))

    try:
        return run_entry(body, runs_flows=args.feedback_command == "export")
    except FeedbackError as exc:
        print(f"vigil feedback: {printable(exc)}", file=sys.stderr)
        return 2
