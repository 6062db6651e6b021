"""Which detector to keep: by a labelled metric on the validation split where it holds
labelled anomalies, otherwise by a label-free criterion. The same rule scores the current
champion, so a promotion compares like with like.

Label-free criteria. ``prior`` and ``prior_all`` (below): the detector with the best mean
validation figure on other series whose validation heads do hold labels (the benchmark's, of
the same kind or of every kind); the benchmark measures which rule comes closest to the
validation-best detector and the pipeline uses that one (tasks/selection_prior.py).

``consensus``: the Spearman correlation of a detector's validation
scores with the consensus of this run's detectors (the mean of their score ranks). It is the
"model centrality" family of internal criteria for unsupervised model selection (Ma et al.,
"The Need for Unsupervised Outlier Model Selection", 2023): with no labels, the detector that
agrees most with the others is the least likely to be an outlier itself. It says nothing
about absolute skill, and a run with one detector makes it trivially 1; the rule's reason,
printed under the table and tagged on the runs, says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, spearmanr

from .evaluation import NO_LABELS, THRESHOLD_FREE, metric_suite
from .metrics import SELECTION_METRICS

CONSENSUS = "consensus"


@dataclass(frozen=True)
class Selection:
    """How candidates are compared: ``metric`` (a key of `metric_suite` on validation, or
    ``consensus``), whether labels are used, and why."""

    metric: str
    labelled: bool
    reason: str
    vus_window: int = 20
    prior: LabelFreePrior | None = None  # the figures of the ``prior`` rules, where they pick

    @property
    def key(self) -> str:
        return f"val_{self.metric}"


def selection_rule(
    metric: str,
    val_labels: np.ndarray,
    vus_window: int,
    n_candidates: int = 2,
    prior: LabelFreePrior | None = None,
) -> Selection:
    """``metric`` on the validation split where it holds labels; otherwise ``prior``'s figures
    where given (cut to the candidates by the caller), else consensus agreement."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"unknown selection metric {metric!r}; choose one of {SELECTION_METRICS}")
    if np.asarray(val_labels).any():
        return Selection(metric, True, f"{metric} on the validation split", vus_window)
    if prior is not None:
        reason = (
            f"label-free ({prior.rule}): {RULE_POOLS[prior.rule]}, {prior.n_series} series of {prior.source}, "
            f"because there is {NO_LABELS.format(split='validation')}. It says which detector does best on "
            f"labelled series like this one, not how well it does on this one"
        )
        return Selection(prior.rule, False, reason, vus_window, prior)
    reason = (
        f"label-free: agreement (Spearman) with the consensus of this run's detectors on the validation "
        f"split, because there is {NO_LABELS.format(split='validation')}; {metric} is undefined there. "
        f"Agreement is no measure of skill"
        + (" (with one detector it is 1 by construction)" if n_candidates == 1 else "")
    )
    return Selection(CONSENSUS, False, reason, vus_window)


def consensus(member_scores: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the members' score ranks (scales differ between detectors; ranks do not)."""
    return np.mean([rankdata(s) / len(s) for s in member_scores], axis=0)


def agreement(scores: np.ndarray, member_scores: Sequence[np.ndarray]) -> float:
    """Spearman correlation of ``scores`` with the consensus of ``member_scores``; NaN for a
    constant score."""
    if np.ptp(scores) == 0:
        return math.nan
    return float(spearmanr(scores, consensus(member_scores)).statistic)


def candidate_scores(
    selection: Selection, val_scores: dict[str, np.ndarray], val_metrics: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Each candidate's selection figure: its validation metric, or its consensus agreement."""
    if selection.labelled:
        return {name: val_metrics[name].get(selection.metric, math.nan) for name in val_scores}
    if selection.prior is not None:
        return {name: selection.prior.means.get(name, math.nan) for name in val_scores}
    return consensus_agreements(val_scores)


def consensus_agreements(val_scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Each candidate's agreement with the consensus of all of them (the ``consensus`` rule)."""
    members = list(val_scores.values())
    return {name: agreement(s, members) for name, s in val_scores.items()}


def pick_best(figures: dict[str, float]) -> str:
    """The candidate with the highest finite figure (the first of ties, in run order)."""
    finite = {n: v for n, v in figures.items() if v is not None and math.isfinite(v)}
    if not finite:
        raise ValueError(f"no candidate has a finite selection figure: {figures}")
    return max(finite, key=finite.get)


def score_outside_candidate(
    selection: Selection,
    scores: np.ndarray,
    flags: np.ndarray,
    val_labels: np.ndarray,
    member_scores: Sequence[np.ndarray],
    detector: str | None = None,
    alert_scores: np.ndarray | None = None,
) -> float:
    """The selection figure of a model that is not one of this run's candidates (the current
    champion), from its validation scores and flags (or, under a prior, its ``detector``'s
    name), as the candidates got theirs. ``alert_scores``: the scores its flags compare with
    its threshold (smoothed by its alert rule; a model from before rules has only ``scores``)."""
    if selection.prior is not None:
        return selection.prior.means.get(detector, math.nan) if detector else math.nan
    if not selection.labelled:
        return agreement(scores, member_scores)
    if selection.metric in THRESHOLD_FREE:  # on the raw scores; the threshold is not read
        top = float(np.max(scores)) if len(scores) else 0.0
        return metric_suite(val_labels, scores, top, vus_window=selection.vus_window)[selection.metric]
    # its flags as they were: the lowest alert score it flags is a threshold that reproduces them
    a = np.asarray(scores if alert_scores is None else alert_scores, dtype=np.float64)
    flags = np.asarray(flags) == 1
    threshold = float(np.min(a[flags])) if flags.any() else float(np.nextafter(np.max(a), np.inf))
    return metric_suite(val_labels, a, threshold, vus_window=selection.vus_window)[selection.metric]


# --- selection from what other series taught (the benchmark's `vigil (selected)` row, and the
# pipeline's label-free rule) ---------------------------------------------------------------

PRIOR = "prior"
PRIOR_ALL = "prior_all"
LABEL_FREE_RULES = (CONSENSUS, PRIOR, PRIOR_ALL)
# What each rule learns from, said in the reports and the pipeline's reason.
RULE_POOLS = {
    CONSENSUS: "agreement (Spearman) with the mean score rank of all detectors on this series",
    PRIOR: "the best mean validation VUS-PR over the other labelled series of the same kind",
    PRIOR_ALL: "the best mean validation VUS-PR over the other labelled series of every kind",
}


def prior_means(validation_figures: dict, exclude=None) -> dict[str, float]:
    """Each detector's mean validation figure over the labelled series in ``validation_figures``
    (series -> detector -> figure), leaving out ``exclude``; NaN figures are skipped."""
    others = [figs for s, figs in validation_figures.items() if s != exclude]
    names = sorted({d for figs in others for d in figs})
    return {d: float(np.nanmean([figs.get(d, math.nan) for figs in others])) for d in names}


def of_kind(labelled: dict, kind: str) -> dict:
    """The labelled heads (keyed (kind, name)) of one kind: what ``prior`` learns from."""
    return {k: f for k, f in labelled.items() if k[0] == kind}


def prior_choice(validation_figures: dict, series) -> str | None:
    """The label-free rule ``prior``: the detector with the best mean validation figure over
    the *other* series whose validation heads hold labels (``validation_figures``: series ->
    detector -> figure, labelled series only). It never reads the series it chooses for; None
    where no other series is labelled."""
    means = prior_means(validation_figures, exclude=series)
    return pick_best(means) if means else None


def label_free_choice(rule: str, key: tuple[str, str], val_scores: dict[str, np.ndarray], labelled: dict) -> str | None:
    """The detector a label-free ``rule`` picks for the series ``key`` = (kind, name) from its
    validation scores (``consensus``) or from the other series' labelled validation heads
    (``labelled``: (kind, name) -> detector -> figure): those of its kind (``prior``) or all
    (``prior_all``, the "global best" baseline of Ma et al., 2023)."""
    if rule == CONSENSUS:
        return pick_best(consensus_agreements(val_scores))
    if rule == PRIOR:
        return prior_choice(of_kind(labelled, key[0]), key)
    if rule == PRIOR_ALL:
        return prior_choice(labelled, key)
    raise ValueError(f"unknown label-free selection rule {rule!r}; choose one of {LABEL_FREE_RULES}")


@dataclass(frozen=True)
class LabelFreePrior:
    """A prior rule's figures as the benchmark left them: ``means`` (detector -> mean validation
    VUS-PR over ``n_series`` labelled series), the ``rule`` they come from and their ``source``."""

    rule: str
    means: dict[str, float]
    n_series: int
    source: str

    def covering(self, candidates: Sequence[str]) -> LabelFreePrior | None:
        """The prior cut to ``candidates``; None where it covers none of them."""
        means = {n: v for n, v in self.means.items() if n in candidates and math.isfinite(v)}
        return LabelFreePrior(self.rule, means, self.n_series, self.source) if means else None
