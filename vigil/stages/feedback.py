"""DVC stage ``feedback`` (`vigil feedback export`): the alerts store's verdicts as the
feedback dataset the next run learns from."""

from __future__ import annotations

import argparse

from vigil.config import load_config
from vigil.entry import run_entry


def export_summary(exported: dict) -> str:
    if not exported:
        return "feedback: no reviewed incident in the alerts store; the feedback dataset is empty"
    lines = []
    for model, record in exported.items():
        for series, s in record["series"].items():
            lines.append(
                f"feedback for {model}, series {series}: {s['steps']} steps ({s['anomalous']} anomalous, "
                f"{s['normal']} normal, {s['left_out']} left out, {s['new_normal']} new normal)"
                + (f"; {s['without_values']} without stored values" if s["without_values"] else "")
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.feedback_export import export_flow

    return run_entry(lambda: export_summary(export_flow(cfg)))
