"""Default vs tuned, per series and detector, through the real `vigil` command line.

For each series it makes a scratch checkout (Vigil's code, dvc.yaml, git and DVC, MLflow and
the Optuna study storage inside it), then runs ``vigil run`` twice on the same prepared data:
with ``tuning.enabled: false`` (the configured parameters) and with it on (prepare, tune,
train on the best trial, evaluate). It prints, per detector:

- the validation objective of the configured and the best parameters (from tuned/params.json:
  what the study measured on the validation head, or on the planted train tail where the
  objective is label-free);
- the test tail's point F1 at the validation threshold, AUC-PR and VUS-PR of both runs (from
  reports/metrics.json), which tuning never saw;
- trials finished and pruned, and the tuning wall time.

    .venv/bin/python benchmarks/tuning.py                      # the three reference series
    .venv/bin/python benchmarks/tuning.py --series smd:machine-1-2 --n-trials 15 --timeout 180
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
SERIES = {
    "smd:machine-1-2": ("smd", DATA / "SMD", "machine-1-2"),
    "telemanom:C-1": ("telemanom", DATA / "MSL", "C-1"),
    "nab:machine_temperature": ("nab", DATA / "NAB", "realKnownCause/machine_temperature_system_failure"),
}
BIN = Path(sys.executable).parent


def sh(*cmd, cwd: Path, env=None) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return out.stdout


def scratch_checkout(root: Path) -> Path:
    """A git + DVC checkout of Vigil's code and stage files under ``root``, committed; the
    parameters files a benchmark writes there stay untracked (a clean tree)."""
    ws = root / "ws"
    ws.mkdir(parents=True)
    for d in ("components", "tasks", "flows", "vigil"):
        shutil.copytree(REPO / d, ws / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", ws / "dvc.yaml")
    (ws / ".gitignore").write_text("mlflow/\nreports/\n__pycache__/\n.vigil/\nbenchmark/\n")
    git = ("git", "-c", "user.email=bench@vigil", "-c", "user.name=bench")
    sh("git", "init", "-q", cwd=ws)
    sh(str(BIN / "dvc"), "init", "-q", cwd=ws)
    sh("git", "add", "-A", cwd=ws)
    sh(*git, "commit", "-q", "-m", "vigil", cwd=ws)
    return ws


def params_for(kind: str, root: Path, name: str, tuned: bool, args) -> dict:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base["dataset"].update(kind=kind, root=str(root), name=name)
    base["tuning"].update(
        enabled=tuned,
        n_trials=args.n_trials,
        timeout=args.timeout,
        concurrency=1,
        objective=args.objective,
    )
    return base


def run_series(key: str, args) -> dict:
    kind, root, name = SERIES[key]
    if not root.is_dir():
        return {"series": key, "skipped": f"{root} is absent"}
    with tempfile.TemporaryDirectory(prefix="vigil-tuning-") as tmp:
        ws = scratch_checkout(Path(tmp))
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect-home")}
        out: dict = {"series": key}
        for label, tuned in (("configured", False), ("tuned", True)):
            (ws / f"{label}.yaml").write_text(yaml.safe_dump(params_for(kind, root, name, tuned, args)))
            t0 = time.perf_counter()
            stdout = sh(str(BIN / "vigil"), "run", "--params", f"{label}.yaml", "--new-data-version", cwd=ws, env=env)
            out[label] = {
                "seconds": time.perf_counter() - t0,
                "metrics": json.loads((ws / "reports" / "metrics.json").read_text()),
                "stdout": stdout,
            }
        out["tuning"] = json.loads((ws / "tuned" / "params.json").read_text())
        return out


def table(result: dict) -> str:
    if "skipped" in result:
        return f"### {result['series']}\nskipped: {result['skipped']}\n"
    tuning = result["tuning"]["detectors"]
    rows = [
        f"### {result['series']}",
        "",
        "| detector | objective (split) | val configured | val tuned | chosen | test point F1 conf / tuned "
        "| test AUC-PR conf / tuned | test VUS-PR conf / tuned | trials | pruned | tuning s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    for name, s in tuning.items():
        a = result["configured"]["metrics"][name]["test"]
        b = result["tuned"]["metrics"][name]["test"]
        split = "planted train tail" if s["objective_used"] == "label_free" else "validation head"
        rows.append(
            f"| {name} | {s['objective_used']} ({split}) | {f(s['default_value'])} | {f(s['best_value'])} "
            f"| {s['chosen']} | {f(a['point_f1'])} / {f(b['point_f1'])} | {f(a['auc_pr'])} / {f(b['auc_pr'])} "
            f"| {f(a['vus_pr'])} / {f(b['vus_pr'])} | {s['trials']['complete'] + s['trials']['pruned']} "
            f"| {s['trials']['pruned']} | {s['seconds']:.0f} |"
        )
    notes = {s["objective_note"] for s in tuning.values() if s["objective_note"]}
    rows += ["", *[f"note: {n}" for n in sorted(notes)]]
    saved = sum(s["pruning_saved_seconds"] for s in tuning.values())
    rows.append(
        f"runs: configured {result['configured']['seconds']:.0f} s, tuned {result['tuned']['seconds']:.0f} s "
        f"(prepare, tune, train, evaluate); pruning saved about {saved:.0f} s"
    )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="*", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--n-trials", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=180, help="seconds per detector")
    parser.add_argument("--objective", default="vus_pr")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    print(
        f"budget per detector: {args.n_trials} trials or {args.timeout:g} s; objective {args.objective}; cores:",
        os.cpu_count(),
    )
    results = []
    for key in args.series:
        result = run_series(key, args)
        results.append(result)
        print(table(result), flush=True)
    if args.out:
        for r in results:
            for label in ("configured", "tuned"):
                r.get(label, {}).pop("stdout", None)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
