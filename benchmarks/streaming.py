"""Throughput and latency of SLO prediction over a real broker: aggregate + predict.

Starts Tansu on loopback, sends a simulated workload of many requests per second, and runs
`vigil stream aggregate` and `vigil stream predict` as the separate processes they are in
production (the registered predictors: run `vigil stream train` first). Two measurements:

- drain: the whole workload is on the topics before the services start; the aggregator's
  messages per second between its first record and its last is its ceiling;
- paced: the producer sends at ``--rate`` responsetime messages per second while both services
  run; whether the aggregator keeps up, and each aggregate record's latency to its predictions
  (the prediction's time when produced minus the record's timestamp, set when the aggregator
  produced it; one clock, one machine), p50 and p99.

Targets (issue 13): at least 20,000 responsetime messages per second aggregated on 2 cores,
and every aggregate record predicted within 100 ms.

    .venv/bin/python benchmarks/streaming.py [--rate 20000] [--seconds 120] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.slo.simulator import interleave, simulate_workload  # noqa: E402
from tasks.kafka import broker, ensure_topics, produce_messages, read_topic  # noqa: E402
from vigil.stream import wait_ready  # noqa: E402


def _services(params: Path, bootstrap: str, idle: float):
    procs = []
    for role in ("predict", "aggregate"):
        p = subprocess.Popen(
            [sys.executable, "-m", "vigil", "stream", role, "--params", str(params), "--bootstrap", bootstrap]
            + ["--idle-exit", str(idle)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(wait_ready(p, role))
    return procs


def _finish(procs) -> list[str]:
    outs = []
    for p in procs:
        out = p.stdout.read()
        p.wait(600)
        if p.returncode != 0:
            raise SystemExit(f"a service failed: {''.join(p.stderr_tail)[-2000:]}")
        outs.append(out.strip().splitlines()[-1])
    return outs


def _workload(rate: float, seconds: int):
    w = simulate_workload(
        0, duration=seconds, n_cpu_hogs=max(1, seconds // 120), n_memory_leaks=max(1, seconds // 90), request_rate=rate
    )
    return w, interleave(w)


def _latencies(bootstrap: str, services: list[str]) -> dict:
    """Each prediction's latency (ms) from its aggregate record, p50 / p99 / max, and how many
    records had a prediction later than 100 ms."""
    preds = read_topic(bootstrap, "predictions")
    if not preds:
        raise SystemExit("no prediction on the predictions topic; the services said:\n" + "\n".join(services))
    lat = np.array([p["produced_ms"] - p["aggregate_ts"] for p in preds])
    worst: dict[int, float] = {}
    for p, ms in zip(preds, lat):
        worst[p["second"]] = max(worst.get(p["second"], 0.0), ms)
    return {
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_ms_max": float(lat.max()),
        "records_predicted_later_than_100ms": int(sum(ms > 100 for ms in worst.values())),
        "services": services,
    }


def drain(params: Path, rate: float, seconds: int) -> dict:
    w, msgs = _workload(rate, seconds)
    with broker() as bootstrap:
        ensure_topics(bootstrap, {"stats": 1, "responsetime": 1, "aggregate": 1, "predictions": 1})
        t0 = time.perf_counter()
        produce_messages(bootstrap, msgs, {"stats": "stats", "responsetime": "responsetime"})
        produce_s = time.perf_counter() - t0
        procs = _services(params, bootstrap, idle=3)
        outs = _finish(procs)
        records = read_topic(bootstrap, "aggregate")
        stamps = np.array([r["_timestamp"] for r in records]) / 1000
        latency = _latencies(bootstrap, outs)
    # the aggregator starts on a full topic: from its first record to its last, every message
    # of the seconds in between went through it
    span = stamps.max() - stamps.min()
    through = (len(records) - 1) / max(1, len(records))  # the share of the workload after the first record
    return {
        "messages": len(msgs),
        "responsetime_messages": len(w.responses),
        "produce_messages_per_s": len(msgs) / produce_s,
        "aggregate_records": len(records),
        "aggregate_span_s": span,
        "aggregated_responsetime_per_s": len(w.responses) * through / span,
        "aggregated_messages_per_s": len(msgs) * through / span,
        **latency,
    }


def paced(params: Path, rate: float, seconds: int) -> dict:
    w, msgs = _workload(rate, seconds)
    grace = yaml.safe_load(params.read_text())["stream"]["grace"]
    with broker() as bootstrap:
        ensure_topics(bootstrap, {"stats": 1, "responsetime": 1, "aggregate": 1, "predictions": 1})
        procs = _services(params, bootstrap, idle=3)
        t0_wall, t0 = time.time(), time.perf_counter()
        # one simulated second per second: `rate` responsetime messages each
        produce_messages(bootstrap, msgs, {"stats": "stats", "responsetime": "responsetime"}, speed=1.0)
        produce_s = time.perf_counter() - t0
        outs = _finish(procs)
        records = read_topic(bootstrap, "aggregate")
        latency = _latencies(bootstrap, outs)
    # second s can close once the producer has sent event time s + 1 + grace; how long after that
    # its record was on the broker says whether the aggregator keeps up (a backlog would grow).
    # `stats` carries one message a second, so its partition passes that time up to 1 s later.
    first_ts = msgs[0][1]["ts"]
    delay = np.array([r["_timestamp"] / 1000 - (t0_wall + r["second"] + 1 + grace - first_ts) for r in records])
    return {
        "target_responsetime_per_s": rate,
        "sent_responsetime_per_s": len(w.responses) / produce_s,
        "messages": len(msgs),
        "aggregate_records": len(records),
        "aggregation_delay_ms_p50": float(np.percentile(delay, 50) * 1000),
        "aggregation_delay_ms_p99": float(np.percentile(delay, 99) * 1000),
        "aggregation_delay_ms_last": float(delay[-1] * 1000),
        **latency,
    }


def _params(repo_params: str, tmp: Path, name: str) -> Path:
    """The repo's params and MLflow registry; the topic layout and a scratch alerts store (the
    champion's predictions are stored as in production, each measurement in its own) are the
    benchmark's."""
    cfg = yaml.safe_load(Path(repo_params).read_text())
    cfg.setdefault("stream", {})["partitions"] = 1
    cfg["stream"]["store"] = f"sqlite:///{tmp / f'alerts-{name}.db'}"
    path = tmp / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20000, help="responsetime messages per simulated second")
    ap.add_argument("--seconds", type=int, default=120, help="simulated seconds per measurement")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "cores": os.cpu_count(),
            "drain": drain(_params(args.params, Path(tmp), "drain"), args.rate, args.seconds),
            "paced": paced(_params(args.params, Path(tmp), "paced"), args.rate, args.seconds),
        }
    d, p = result["drain"], result["paced"]
    print(f"cores: {result['cores']}")
    print(
        f"drain: {d['messages']:,} messages ({d['responsetime_messages']:,} responsetime) aggregated at "
        f"{d['aggregated_responsetime_per_s']:,.0f} responsetime msg/s "
        f"({d['aggregated_messages_per_s']:,.0f} msg/s in all; "
        f"{d['aggregated_responsetime_per_s'] / 20000:.2f}x the 20,000 target); "
        f"producer {d['produce_messages_per_s']:,.0f} msg/s"
    )
    print(
        f"paced at {p['target_responsetime_per_s']:,.0f} responsetime msg/s "
        f"(sent {p['sent_responsetime_per_s']:,.0f}/s): "
        f"{p['aggregate_records']} records, each on the broker {p['aggregation_delay_ms_p50']:.0f} ms (p50) / "
        f"{p['aggregation_delay_ms_p99']:.0f} ms (p99) after its second could close (event time + 1 s + grace) "
        f"(last: {p['aggregation_delay_ms_last']:.0f} ms)"
    )
    print(
        f"record -> prediction latency, paced: p50 {p['latency_ms_p50']:.1f} ms, p99 {p['latency_ms_p99']:.1f} ms, "
        f"max {p['latency_ms_max']:.1f} ms; {p['records_predicted_later_than_100ms']} of {p['aggregate_records']} "
        f"records later than 100 ms (target: none)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
