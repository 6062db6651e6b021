"""DVC stage ``generate`` (`vigil generate`): write the synthetic dataset of params."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.datasets import DatasetSource, get_kind
from components.datasets.synthetic_layout import generate
from vigil.config import Config, load_config
from vigil.entry import run_entry


def generate_synthetic(cfg: Config, out: str | None) -> str:
    d = cfg.dataset
    # a kind made from settings generates into its own root; otherwise the default synthetic folder
    folder = Path(out) if out else d.root if get_kind(d.kind).generate else Path("data/raw/synthetic")
    generate(DatasetSource("synthetic", folder, "synthetic", d.synthetic.model_dump()), force=True)
    return f"synthetic data written to {folder}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="folder (default: dataset.root for the synthetic kind, else data/raw/synthetic)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)
    return run_entry(lambda: generate_synthetic(cfg, args.out), runs_flows=False)
