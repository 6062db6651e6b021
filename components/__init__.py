"""Vigil's pure library: datasets, preprocessing, detectors, thresholds, metrics, attribution.

Everything here depends on numpy, pandas, scipy, scikit-learn and torch only — never on
Prefect, MLflow, DVC or Great Expectations — so it can be imported and tested on its own.
Functions take their parameters as arguments; nothing here reads configuration files.
"""
