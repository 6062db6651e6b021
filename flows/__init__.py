"""Vigil's Prefect flows and deployments: each module defines flows and nothing else.

Importing the package sets the console defaults before Prefect is imported (Prefect reads its
settings then), for a Prefect worker that imports a flow without going through `vigil`.
"""

from vigil.plumbing import quiet_prefect

quiet_prefect()
