"""DVC stage ``evaluate`` (`vigil run --step evaluate`): measure, select, register."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vigil.config import load_config
from vigil.entry import run_entry, step_imports

if TYPE_CHECKING:
    from tasks.registry import RegistryDecision


def summary(out: dict) -> str:
    d: RegistryDecision = out["decision"]
    if d.promoted:
        if d.champion_before is None:
            before = ""
        elif d.champion_note:
            before = f" (the champion before it, {d.champion_note})"
        else:
            before = f" (beat version {d.champion_before}: {d.champion_before_score:.4f})"
        verdict = (
            f"registered {d.model} version {d.version} ({d.detector}, {d.criterion} {d.score:.4f}) "
            f"and made it @champion{before}"
        )
    else:
        verdict = (
            f"registered {d.model} version {d.version} ({d.detector}, {d.criterion} {d.score:.4f}); "
            f"champion stays version {d.champion} ({d.champion_before_score:.4f} on this data)"
        )
    return "\n".join([out["table"], "", verdict])


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.evaluate import evaluate_flow

    return run_entry(lambda: summary(evaluate_flow(cfg)), warm_up=step_imports(cfg, "evaluate"))
