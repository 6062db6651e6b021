"""DVC stage ``train`` (`vigil run --step train`): fit every configured detector."""

from __future__ import annotations

import argparse
import sys

from vigil.config import load_config
from vigil.entry import run_entry, step_imports


def summary(info: dict) -> str:
    return "\n".join(f"trained {name} in {i['fit_seconds']:.1f} s" for name, i in info.items())


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.train import train_flow

    return run_entry(lambda: summary(train_flow(cfg, verbose=sys.stderr.isatty())), warm_up=step_imports(cfg, "train"))
