"""DVC stage ``tune`` (`vigil tune`): Optuna tuning of every detector with a search space."""

from __future__ import annotations

import argparse

from vigil.config import load_config
from vigil.entry import run_entry, step_imports


def summary(result: dict) -> str:
    if not result["enabled"]:
        return "tuning is off (tuning.enabled: false): train fits the configured parameters"
    lines = []
    for name, s in result["detectors"].items():
        t = s["trials"]
        lines.append(
            f"{name:16s} {s['objective_used']} configured {s['default_value']:.4f} -> best {s['best_value']:.4f} "
            f"({s['chosen']}); {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed; "
            f"{s['seconds']:.0f} s this run; study {s['study']}"
        )
    if result["untuned"]:
        lines.append(f"no search space in tuning.spaces, configured parameters kept: {', '.join(result['untuned'])}")
    storage = next(iter(result["detectors"].values()), {}).get("storage")
    if storage:
        lines.append(f"studies in {storage}; browse them: .venv/bin/optuna-dashboard {storage}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.tune import tune_flow

    return run_entry(lambda: summary(tune_flow(cfg)), warm_up=step_imports(cfg, "tune"))
