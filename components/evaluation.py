"""The alert rule's choice on validation, and the whole metric suite on test, in one place so
that every caller reports the same, honestly labelled, figures.

Paths to a model's `AlertRule` (smoothing, threshold, incident rule; `choose_alert_rule`),
and the rule records which one was taken:

- labelled: the (threshold rule, smoothing) pair with the best held-out F1 across the two
  halves of the validation head (`THRESHOLD_RULES`: best F1, best event F1, POT, telemanom's
  dynamic threshold, a Gaussian tail), or one rule forced;
- label-free, where the validation split holds no labelled anomaly (operators' data often
  has no labels at all): by default POT on the detector's ``calibration_scores_``, its scores
  on a tail of train that the fitted model did not learn from (data assumed normal), smoothed
  as the scores it will be compared with.

A metric that needs labels is never invented: where a split holds no labelled anomaly it is
NaN, and the result says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import metrics as M
from .alerting import RULES_NEED_LABELS, AlertRule, AlertSettings, incident_quality, smooth
from .attribution import hit_rate
from .datasets.base import Anomaly
from .detectors import Detector
from .thresholds import (
    best_event_f1_threshold,
    best_f1_threshold,
    dynamic_threshold,
    gauss_tail_threshold,
    pot_threshold,
    pot_threshold_from,
)

POT_MIN_PEAKS = 10  # pot_threshold's floor on excesses for a GPD fit
NO_LABELS = "no labelled anomaly in the {split} split"
LABEL_METRICS = ("point", "pa", "event", "affiliation")  # prefixes of the figures that need labels
THRESHOLD_FREE = ("auc_roc", "auc_pr", "vus_pr")


@dataclass(frozen=True)
class Threshold:
    """A label-free threshold on raw scores, how it was found and why (`label_free_threshold`)."""

    value: float
    rule: str  # how it was chosen, in words, with the split it saw
    label_free: bool
    detail: str = ""  # the rule's figures, and why a label-free rule was used


@dataclass(frozen=True)
class FeedbackSteps:
    """Operator-labelled steps (the feedback dataset, components/feedback.py), scored by the
    detector being thresholded: labels 1 / 0, steps left out already removed."""

    scores: np.ndarray
    labels: np.ndarray
    segments: int  # stretches they came from
    skipped: int = 0  # stretches shorter than the detector's window, not scored

    def describe(self) -> str:
        n, pos = len(self.labels), int(np.sum(self.labels))
        skipped = f"; {self.skipped} stretch(es) shorter than the window left out" if self.skipped else ""
        return f"operator feedback: {n} steps in {self.segments} stretch(es), {pos} in confirmed incidents{skipped}"


def feedback_steps(detector: Detector, x: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> FeedbackSteps:
    """Each stretch of the feedback data scored on its own (a stretch is contiguous in time;
    two stretches are not), the steps left out (label -1) dropped."""
    scores, kept, skipped = [], [], 0
    for a, b in np.asarray(segments).reshape(-1, 2):
        try:
            s = detector.score(x[a:b])
        except ValueError:  # shorter than the detector's window
            skipped += 1
            continue
        use = labels[a:b] >= 0
        scores.append(s[use])
        kept.append(labels[a:b][use])
    if not scores:
        return FeedbackSteps(np.zeros(0), np.zeros(0, dtype=np.int8), 0, skipped)
    return FeedbackSteps(np.concatenate(scores), np.concatenate(kept), len(scores), skipped)


# what label_free_threshold's scores are, in its messages and rule text
TRAIN_TAIL, VALIDATION_HEAD = "held-out train-tail", "unlabelled validation-head"


def label_free_threshold(
    calibration_scores: np.ndarray, *, pot_q: float, pot_level: float, scores_from: str = TRAIN_TAIL
) -> Threshold:
    """POT on scores of data assumed normal (``scores_from`` names them: the held-out train
    tail's, or the validation head's where it holds no label). POT starts at the ``pot_level``
    quantile, lowered where needed until `POT_MIN_PEAKS` scores exceed it (a short tail, or tied
    scores: MSL's one-hot command columns give many); with too few distinct scores for that,
    the threshold sits just above the largest one. The rule says which."""
    x = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    n = len(x)
    if n < 2 * POT_MIN_PEAKS:
        fix = (
            "Lengthen train, raise the detector's val_fraction/calibration_fraction, or use "
            "threshold.label_free.rule: pot_validation (on validation scores)"
            if scores_from == TRAIN_TAIL
            else "Raise preprocessing.validation_fraction (the validation head is too short)"
        )
        raise ValueError(
            f"label-free threshold: {n} {scores_from} scores are too few for POT; it needs {2 * POT_MIN_PEAKS}. {fix}"
        )
    why = NO_LABELS.format(split="validation")
    start = float(np.quantile(x, pot_level))
    # the highest start that leaves enough excesses: below the POT_MIN_PEAKS-th largest score
    below = x[x < x[-POT_MIN_PEAKS]]
    if below.size == 0:
        return Threshold(
            float(np.nextafter(x[-1], np.inf)),
            f"label-free: above the largest {scores_from} score",
            True,
            f"{n} scores, too few distinct ones for POT; {why}",
        )
    start = min(start, float(below[-1]))
    level = float(np.mean(x <= start))
    return Threshold(
        pot_threshold_from(x, start, pot_q),
        f"label-free: pot on {scores_from} scores",
        True,
        f"q={pot_q:g}, from the {level:.3g} quantile of {n} scores; {why}",
    )


# --- alert rules: smoothing + a threshold rule + the incident rule, chosen per series ------


# name -> threshold from (smoothed validation scores, labels, smoothed calibration scores, settings)
_RULE_FUNCTIONS = {
    "best_f1": lambda v, y, c, s: best_f1_threshold(v, y)[0],
    "best_event_f1": lambda v, y, c, s: best_event_f1_threshold(v, y)[0],
    "pot_train": lambda v, y, c, s: label_free_threshold(c, pot_q=s.pot_q, pot_level=s.pot_level).value,
    "pot_validation": lambda v, y, c, s: pot_threshold(v, q=s.pot_q, level=s.pot_level),
    "dynamic": lambda v, y, c, s: dynamic_threshold(v),
    "gauss_tail": lambda v, y, c, s: gauss_tail_threshold(c, s.tail_p),
}
# name -> (needs labels, threshold function): the one registry of threshold rules
THRESHOLD_RULES = {name: (RULES_NEED_LABELS[name], fn) for name, fn in _RULE_FUNCTIONS.items()}
RULE_SPLITS = {
    "best_f1": "validation labels",
    "best_event_f1": "validation labels",
    "pot_train": "held-out train-tail scores",
    "pot_validation": "validation scores",
    "dynamic": "validation scores",
    "gauss_tail": "held-out train-tail scores",
}


def rule_threshold(
    rule: str, smoothing: tuple[str, int], val_scores, val_labels, calibration_scores, settings
) -> float:
    """``rule``'s threshold on the smoothed scores (ValueError where it is undefined there)."""
    kind, window = smoothing
    v, c = smooth(val_scores, kind, window), smooth(calibration_scores, kind, window)
    return float(THRESHOLD_RULES[rule][1](v, np.asarray(val_labels), c, settings))


def _rule(
    rule, smoothing, value, settings: AlertSettings, how: str, detail: str, *, labels_used: bool, labels_from: str
) -> AlertRule:
    kind, window = smoothing
    split = labels_from if THRESHOLD_RULES[rule][0] else RULE_SPLITS[rule]
    return AlertRule(
        threshold=float(value),
        smoothing=kind,
        window=int(window) if kind != "none" else 1,
        merge_gap=settings.merge_gap,
        min_steps=settings.min_steps,
        rule=f"{how}{rule} on {split}",
        label_free=not labels_used,
        detail=detail,
    )


def nested_scores(val_scores, val_labels, calibration_scores, settings: AlertSettings) -> dict[tuple, float] | None:
    """Mean point F1 of every (rule, smoothing) pair on one half of the validation head with
    its threshold set on the other, over the folds whose both halves hold labels; None where
    no fold does."""
    v, y = np.asarray(val_scores, dtype=np.float64), np.asarray(val_labels).astype(bool)
    mid = len(v) // 2
    halves = [(slice(0, mid), slice(mid, None)), (slice(mid, None), slice(0, mid))]
    folds = [(a, b) for a, b in halves if y[a].any() and y[b].any()]
    if not folds:
        return None
    out = {}
    for rule in settings.rules:
        for kind, window in settings.smoothing:
            f1s = []
            for a, b in folds:
                try:
                    t = rule_threshold(rule, (kind, window), v[a], y[a], calibration_scores, settings)
                except ValueError:
                    f1s.append(0.0)
                    continue
                # the held-out half is smoothed with the steps before it, as a stream would be
                before = v[: b.start] if b.start else None
                f1s.append(M.point_prf(y[b], smooth(v[b], kind, window, before) >= t)[2])
            out[(rule, (kind, window))] = float(np.mean(f1s))
    return out


def choose_alert_rule(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    calibration_scores: np.ndarray,
    settings: AlertSettings,
    *,
    feedback: FeedbackSteps | None = None,
) -> AlertRule:
    """The model's alert rule, never from the test split (`AlertSettings`). Operators' labelled
    steps (``feedback``) join the validation head where they hold a confirmed anomaly."""
    v, y = np.asarray(val_scores, dtype=np.float64), np.asarray(val_labels).astype(np.int8)
    note, labels_from = "", "validation labels"
    if feedback is not None and len(feedback.labels):
        if np.any(feedback.labels):
            labels_from = "validation labels and operator feedback" if y.any() else "operator feedback"
            v, y = np.concatenate([v, feedback.scores]), np.concatenate([y, feedback.labels])
            note = f"{feedback.describe()}; "
        else:
            note = f"{feedback.describe()}: no confirmed anomaly, so "
    labelled = bool(y.any())

    def made(rule, smoothing, value, how: str, detail: str, labels_used: bool) -> AlertRule:
        return _rule(rule, smoothing, value, settings, how, detail, labels_used=labels_used, labels_from=labels_from)

    free_rule, *free_smoothing = settings.label_free
    fb_rule, *fb_smoothing = settings.fallback
    if settings.method != "nested":
        rule = settings.method
        needs = THRESHOLD_RULES[rule][0]
        if needs and not labelled:
            how = f"label-free ({NO_LABELS.format(split='validation')}): "
            rule, smoothing = free_rule, tuple(free_smoothing)
        else:
            smoothing, how = tuple(fb_smoothing if needs else free_smoothing), ""
        value = rule_threshold(rule, smoothing, v, y, calibration_scores, settings)
        return made(rule, smoothing, value, how, note.rstrip("; "), needs and labelled)
    if not labelled:
        why = NO_LABELS.format(split="validation")
        free_smoothing = tuple(free_smoothing)
        try:
            value = rule_threshold(free_rule, free_smoothing, v, y, calibration_scores, settings)
        except ValueError as exc:  # the configured rule undefined here: POT on the raw train-tail scores,
            # else on the head's own raw scores (a window longer than the held-out tail leaves none)
            why += f"; {_pair_text(free_rule, free_smoothing)} failed ({exc})"
            free_smoothing = ("none", 1)
            try:
                free_rule = "pot_train"
                value = rule_threshold(free_rule, free_smoothing, v, y, calibration_scores, settings)
                why += ", so pot_train on raw scores"
            except ValueError:  # POT as pot_train's, its start lowered for tied top scores (a spread's plateau)
                free_rule = "pot_validation"
                pot = label_free_threshold(
                    v, pot_q=settings.pot_q, pot_level=settings.pot_level, scores_from=VALIDATION_HEAD
                )
                value = pot.value
                why += f", as did pot_train on raw scores, so {pot.rule.removeprefix('label-free: ')} (raw)"
        return made(free_rule, free_smoothing, value, "label-free: ", note + why, False)
    scored = nested_scores(v, y, calibration_scores, settings)
    if scored is None:
        value = rule_threshold(fb_rule, tuple(fb_smoothing), v, y, calibration_scores, settings)
        why = "the validation head's halves do not both hold labels, so no rule could be compared"
        return made(fb_rule, tuple(fb_smoothing), value, "", note + why, True)
    # best held-out F1 first; ties go to the earlier rule and smoothing in the settings' order.
    # Set on the whole head, a pair's threshold must catch a labelled step there: a rule fitted
    # to the data (dynamic: its pruning) can land above every score of a longer stretch.
    ranked = sorted(scored.items(), key=lambda kv: -kv[1])
    skipped = []
    for (rule, smoothing), f1 in ranked:
        try:
            value = rule_threshold(rule, smoothing, v, y, calibration_scores, settings)
        except ValueError:
            skipped.append(_pair_text(rule, smoothing))
            continue
        if not np.any((smooth(v, *smoothing) >= value) & (y > 0)):
            skipped.append(_pair_text(rule, smoothing))
            continue
        detail = f"{note}nested on the validation head: held-out point F1 {f1:.3f}, the best of {len(scored)} pairs"
        if skipped:
            detail += f" ({', '.join(skipped)} ranked higher but caught no labelled step set on the whole head)"
        return made(rule, smoothing, value, "", detail, True)
    value = rule_threshold(fb_rule, tuple(fb_smoothing), v, y, calibration_scores, settings)
    why = f"{note}no pair's threshold, set on the whole head, caught a labelled step there"
    return made(fb_rule, tuple(fb_smoothing), value, "", why, True)


def _pair_text(rule: str, smoothing: tuple[str, int]) -> str:
    return rule if smoothing[0] == "none" else f"{rule} on the trailing {smoothing[0]} of {smoothing[1]}"


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:  # a metric undefined on this split (e.g. no anomaly at all)
        return math.nan


def best_achievable_f1(labels: np.ndarray, raw_oracle: float, smoothed: np.ndarray, best_threshold=None) -> float:
    """The denominator of retention: the best F1 over every threshold on the raw scores
    (``raw_oracle``, found by ``best_threshold``) or on the scores as the alert rule smooths
    them, whichever is higher. An oracle on raw scores alone can sit below the F1 of a rule
    that smooths (at c2f0276 the benchmark reported retention up to 1.65, on MSL's P-11), and
    a smoothing that loses F1 still counts against the rule."""
    fn = best_threshold or best_f1_threshold
    return max(raw_oracle, fn(np.asarray(smoothed, dtype=np.float64), labels)[1])


def metric_suite(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float | AlertRule,
    *,
    contributions: np.ndarray | None = None,
    causes: Sequence[Anomaly] = (),
    vus_window: int = 20,
    steps_per_day: float | None = None,
    past_scores: np.ndarray | None = None,
) -> dict[str, float]:
    """Every score Vigil reports, keyed by what it is:

    ``point_*`` point-wise; ``pa_*`` point-adjusted (inflated, for comparison with papers);
    ``event_*`` composite (point precision, event recall); ``affiliation_*``; ``auc_roc``,
    ``auc_pr`` (average precision), ``vus_pr`` threshold-free, on the raw scores;
    ``hitrate_100``/``hitrate_150`` where causes and contributions over two or more metrics
    are given (with one metric every detector scores 1 by construction, so the figure would
    say nothing). ``threshold`` is a model's `AlertRule` (or a bare threshold on raw scores):
    the thresholded figures are those of its flags, and ``incidents*`` those of its incidents
    (`alerting.IncidentQuality`; per day where ``steps_per_day`` is known). ``oracle_*_f1``:
    the best F1 over every threshold on these raw scores, which sees the labels (context
    only); ``*_retention``: the F1 at the rule over the best achievable one
    (`best_achievable_f1`), so at most 1. ``past_scores``: the raw
    scores just before these (the smoothing reads them). NaN marks a metric undefined
    on this data: all that need labels where ``labels`` hold no anomaly.
    """
    labels = np.asarray(labels)
    rule = threshold if isinstance(threshold, AlertRule) else AlertRule(float(threshold))
    preds = rule.flags(scores, past_scores).astype(np.int8)
    incidents = rule.incidents(scores, past_scores)
    raised = sum(i.raised for i in incidents)
    n = max(len(preds), 1)
    out: dict[str, float] = {
        "threshold": rule.threshold,
        "flagged_share": float(preds.mean()),
        "incidents": float(raised),
        "incidents_per_1000_steps": 1000.0 * raised / n,
    }
    if not labels.any():
        for prefix in LABEL_METRICS:
            out.update({f"{prefix}_{m}": math.nan for m in ("precision", "recall", "f1")})
        out.update({k: math.nan for k in THRESHOLD_FREE})
        out.update({k: math.nan for k in LABELLED_INCIDENT_FIGURES})
        return out
    for prefix, fn, p in (("point", M.point_prf, preds), ("pa", M.point_prf, None), ("event", M.event_f1, preds)):
        p = M.point_adjust(labels, preds) if p is None else p
        out.update(dict(zip((f"{prefix}_precision", f"{prefix}_recall", f"{prefix}_f1"), fn(labels, p))))
    try:
        aff = M.affiliation_prf(labels, preds)
    except ValueError:
        aff = (math.nan,) * 3
    out.update(dict(zip(("affiliation_precision", "affiliation_recall", "affiliation_f1"), aff)))
    out["auc_roc"] = _safe(M.auc_roc, labels, scores)
    out["auc_pr"] = _safe(M.auc_pr, labels, scores)
    out["vus_pr"] = _safe(M.vus_pr, labels, scores, vus_window)
    quality = incident_quality(labels, incidents, steps_per_day or math.nan)
    out.update(quality.figures())
    out["false_incidents_per_1000_steps"] = 1000.0 * quality.false / n
    out["oracle_point_f1"] = best_f1_threshold(scores, labels)[1]
    out["oracle_event_f1"] = best_event_f1_threshold(scores, labels)[1]
    smoothed = rule.smoothed(scores, past_scores)
    for retention, f1, oracle, fn in (
        ("threshold_retention", "point_f1", "oracle_point_f1", best_f1_threshold),
        ("event_retention", "event_f1", "oracle_event_f1", best_event_f1_threshold),
    ):
        best = best_achievable_f1(labels, out[oracle], smoothed, fn)
        out[retention] = out[f1] / best if best > 0 else math.nan
    if (
        contributions is not None
        and np.ndim(contributions) == 2
        and np.shape(contributions)[1] > 1
        and any(a.metrics for a in causes)
    ):
        out["hitrate_100"] = hit_rate(contributions, causes, 1.0)
        out["hitrate_150"] = hit_rate(contributions, causes, 1.5)
    return out


LABELLED_INCIDENT_FIGURES = (
    "incidents_per_event",
    "false_incidents_per_day",
    "false_incidents_per_1000_steps",
    "incident_event_recall",
    "incident_event_precision",
    "time_to_detect_steps",
    "oracle_point_f1",
    "oracle_event_f1",
    "threshold_retention",
    "event_retention",
)


@dataclass
class DetectorResult:
    """One fitted detector, thresholded on validation and measured on both splits."""

    name: str
    fit_seconds: float
    threshold: AlertRule  # with the smoothing and incident rule the model carries
    validation: dict[str, float]
    test: dict[str, float]
    val_scores: np.ndarray
    test_scores: np.ndarray
    undefined: dict[str, str] = field(default_factory=dict)  # split -> why its label metrics are NaN


def threshold_and_measure(
    name: str,
    detector: Detector,
    fit_seconds: float,
    *,
    val_x: np.ndarray,
    val_labels: np.ndarray,
    test_x: np.ndarray,
    test_labels: np.ndarray,
    test_causes: Sequence[Anomaly],
    alerting: AlertSettings,
    vus_window: int,
    steps_per_day: float | None = None,
    feedback: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> DetectorResult:
    """The alert rule from the validation split and the operators' feedback (``feedback``:
    steps, labels, segments) or the label-free rule only; the whole metric suite on both
    splits (validation figures on the validation split alone; the test tail smoothed with
    the validation head's last scores before it, as a stream would be)."""
    val_scores = detector.score(val_x)
    steps = feedback_steps(detector, *feedback) if feedback is not None else None
    rule = choose_alert_rule(val_scores, val_labels, detector.calibration_scores_, alerting, feedback=steps)
    val_metrics = metric_suite(val_labels, val_scores, rule, vus_window=vus_window, steps_per_day=steps_per_day)
    test_scores, test_contrib = detector.score_and_contributions(test_x)
    test_metrics = metric_suite(
        test_labels,
        test_scores,
        rule,
        contributions=test_contrib,
        causes=test_causes,
        vus_window=vus_window,
        steps_per_day=steps_per_day,
        past_scores=val_scores,
    )
    undefined = {
        split: NO_LABELS.format(split=split)
        for split, labels in (("validation", val_labels), ("test", test_labels))
        if not np.any(labels)
    }
    return DetectorResult(name, fit_seconds, rule, val_metrics, test_metrics, val_scores, test_scores, undefined)
