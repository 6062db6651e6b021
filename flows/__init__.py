"""Prefect flows, their configuration, and the `vigil` command line."""
