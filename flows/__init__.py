"""Vigil's flows, config and command line.

Importing the package sets the console defaults every entry point wants before Prefect is
imported (Prefect reads its settings then): Prefect without a server and at WARNING, MLflow
without progress bars. A value already in the environment wins.
"""

from .entry import quiet_prefect

quiet_prefect()
