"""The `train` flow (DVC stage ``train``): fit every detector named in params, one task each
(retried once on failure). Run alone: ``python -m flows.train [--params FILE]``."""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from tasks.fit import fit_detector

from .config import load_config
from .entry import run_entry
from .run_lock import holds_checkout
from .workspace import Workspace


@flow(name="train")
@holds_checkout
def train_flow(
    params: str = "params.yaml",
    repo_root: str = ".",
    verbose: bool = False,
    wait_for_lock: bool = True,
    run_id: str | None = None,
) -> dict:
    """Standalone (no ``run_id``) it reads the published data/processed and publishes models/
    whole once every detector is fitted; inside the pipeline it works in the run's folder."""
    ws = Workspace.at(repo_root)
    cfg = load_config(ws.root / params)
    out = ws.run_folder(run_id)
    inputs = out if run_id else ws
    futures = [fit_detector.submit(name, p, inputs.processed, out.models, verbose) for name, p in cfg.detectors.items()]
    info = {f.result()["name"]: f.result() for f in futures}
    if run_id is None:
        out.publish("models")
        out.discard()
    return info


def summary(info: dict) -> str:
    return "\n".join(f"trained {name} in {i['fit_seconds']:.1f} s" for name, i in info.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.train", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    args = parser.parse_args(argv)
    return run_entry(lambda: summary(train_flow(args.params, verbose=sys.stderr.isatty())))


if __name__ == "__main__":
    sys.exit(main())
