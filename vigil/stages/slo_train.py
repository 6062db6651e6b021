"""DVC stage ``slo_train`` (`vigil stream train`): fit every SLO predictor, thresholds on the
validation run, register each in MLflow; reports/slo_validation.json."""

from __future__ import annotations

import argparse

from vigil.config import load_config
from vigil.entry import run_entry


def lead_table(rows: dict, lead: int, early: int) -> str:
    """The lead-window figures of each predictor as a Markdown table."""

    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    head = (
        f"| predictor | precision | recall | F1 | accuracy | mean lead (s) | lead p10/p50/p90 (s) | "
        f"violations ahead >= {early} s | false alarms / h | leaks with a false alarm (any prediction) |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {f(r['precision'])} | {f(r['recall'])} | {f(r['f1'])} | {f(r['accuracy'])} | "
            f"{f(r['lead_mean'], '{:.1f}')} | {f(r['lead_p10'], '{:.0f}')}/{f(r['lead_median'], '{:.0f}')}/"
            f"{f(r['lead_p90'], '{:.0f}')} | {r['predicted_violations']}/{r['violations']} found, "
            f"{f(r[f'share_ahead_{early}s'], '{:.0%}')} | {f(r['false_alarms_per_hour'], '{:.1f}')} | "
            f"{r['leaks_with_false_alarm']}/{r['leaks']} ({r['leaks_with_any_prediction']}) |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)  # the predictors checked here: a named error, exit 2, before Prefect starts
    st = cfg.stream
    from flows.stream import slo_train_flow

    def body() -> str:
        r = slo_train_flow(cfg)
        versions = ", ".join(f"{n} v{v}" for n, v in r["versions"].items())
        before = r["champion_before"]
        if r["promoted"]:
            verdict = f"champion: {r['best']} (validation run)"
        else:
            verdict = (
                f"champion stays version {before['version']} ({before['predictor']}): F1 {before['f1']:.3f} on the "
                f"validation run against {r['best']}'s {r['predictors'][r['best']]['f1']:.3f}"
            )
        return (
            f"registered {versions} of {st.model_name}; {verdict}\n{lead_table(r['predictors'], r['lead'], st.early)}"
        )

    return run_entry(body)
