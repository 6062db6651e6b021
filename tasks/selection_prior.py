"""The pipeline's label-free rule, as the benchmark measured it: read from the benchmark's
summary (``reports/benchmark_summary.json``, a DVC output of stage ``benchmark`` kept in git),
which says which rule came closest to the validation-best detector on labelled heads and
holds each prior's figures. A summary that is absent, unreadable or silent on these
candidates leaves the pipeline on consensus, and says why."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from components.datasets import DataError
from components.selection import CONSENSUS, LABEL_FREE_RULES, PRIOR, PRIOR_ALL, LabelFreePrior

BENCHMARK = "benchmark"  # registry.label_free_rule: the rule the benchmark found best


def _means(entry, where: str) -> tuple[dict[str, float], int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("means"), dict):
        raise ValueError(f"{where}: expected an object with 'means' (detector -> figure)")
    means = {}
    for name, v in entry["means"].items():
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
            raise ValueError(f"{where}.means.{name}: expected a number or null, got {v!r}")
        means[str(name)] = math.nan if v is None else float(v)
    n = entry.get("n_series")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{where}.n_series: expected a positive integer, got {n!r}")
    return means, n


def label_free_prior(summary: Path, rule: str, kind: str, candidates: list[str]) -> tuple[LabelFreePrior | None, str]:
    """The prior the pipeline selects by where validation holds no label, cut to
    ``candidates``, for a series of ``kind``; or None (consensus) and why. ``rule``:
    ``benchmark`` (the summary's best rule), ``consensus``, ``prior`` or ``prior_all``."""
    if rule == CONSENSUS:
        return None, "registry.label_free_rule is consensus"
    summary = Path(summary)
    if not summary.is_file():
        return None, f"no benchmark summary at {summary} (run `vigil benchmark`)"
    try:
        raw = summary.read_bytes()
        doc = json.loads(raw)
        meta = doc["meta"]
        sel = meta.get("selection") or {}
        if rule == BENCHMARK:
            rule = sel.get("label_free_rule", CONSENSUS)
            if rule not in LABEL_FREE_RULES:
                raise ValueError(f"meta.selection.label_free_rule: unknown rule {rule!r}")
            if rule == CONSENSUS:
                return None, f"the benchmark ({summary}) found consensus the best label-free rule"
        priors = sel.get("priors")
        if not isinstance(priors, dict):
            return None, f"{summary} holds no priors (a benchmark from before them: rerun `vigil benchmark`)"
        if rule == PRIOR:
            entry = (priors.get(PRIOR) or {}).get(kind)
            if entry is None:
                return None, f"{summary} holds no labelled series of kind {kind!r} for the prior"
            means, n = _means(entry, f"meta.selection.priors.prior.{kind}")
        elif rule == PRIOR_ALL:
            means, n = _means(priors.get(PRIOR_ALL), "meta.selection.priors.prior_all")
        else:
            raise ValueError(f"unknown label-free rule {rule!r}")
        commit = str(meta.get("git_commit", "?"))[:7]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{summary}: cannot read the label-free prior: {exc}") from exc
    source = f"the benchmark ({summary.name} of commit {commit}, md5 {hashlib.md5(raw).hexdigest()[:12]})"
    prior = LabelFreePrior(rule, means, n, source).covering(candidates)
    if prior is None:
        return None, f"the benchmark's prior ({summary}) covers none of the detectors {candidates}"
    return prior, ""
