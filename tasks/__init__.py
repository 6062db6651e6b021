"""Prefect tasks: thin adapters that call `components` and do the I/O with DVC, GX and MLflow
(Optuna arrives with tuning). They take plain values or the one config section they use, never
the whole config, and never import `flows`."""
