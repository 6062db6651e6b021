"""DVC stage ``slo_record`` (`vigil stream record`): simulate and aggregate the runs the SLO
predictors learn from, into ``stream.data.folder``."""

from __future__ import annotations

import argparse
import json

from vigil.config import load_config
from vigil.entry import run_entry


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # a named error, exit 2, before Prefect starts
    from flows.stream import slo_record_flow

    return run_entry(lambda: json.dumps(slo_record_flow(cfg), indent=1))
