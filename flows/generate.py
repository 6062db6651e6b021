"""Write the synthetic dataset of params (DVC stage ``generate``).
Run alone: ``python -m flows.generate [--params FILE] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.datasets import DatasetSource, get_kind
from components.datasets.synthetic_layout import generate

from .config import load_config
from .entry import run_entry


def generate_synthetic(params: str, out: str | None) -> str:
    cfg = load_config(params)
    d = cfg.dataset
    # a kind made from settings generates into its own root; otherwise the default synthetic folder
    folder = Path(out) if out else d.root if get_kind(d.kind).generate else Path("data/raw/synthetic")
    generate(DatasetSource("synthetic", folder, "synthetic", d.synthetic.model_dump()), force=True)
    return f"synthetic data written to {folder}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.generate", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--debug", action="store_true", help="tracebacks and Prefect's console logs on errors")
    parser.add_argument("--out", help="folder (default: dataset.root for the synthetic kind, else data/raw/synthetic)")
    args = parser.parse_args(argv)
    return run_entry(lambda: generate_synthetic(args.params, args.out), runs_flows=False)


if __name__ == "__main__":
    sys.exit(main())
