"""Prefect tasks: thin adapters that call `components` and do the I/O with DVC, GX, Optuna and MLflow."""
