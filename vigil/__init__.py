"""Vigil's application shell: what runs the library and the flows for a person or a machine:
the command tree (`vigil.cli`, and `vigil stage NAME` that dvc.yaml calls: `vigil.stages`), the
params schema with every check (`vigil.config`), the live page (`vigil.web`), the long-running
services (`vigil.stream`: the aggregator and the predictor; `vigil serve`: the scheduled
deployments), the process plumbing (ports, locks, reapers, the temporary Prefect API) and the
tooling that keeps `dvc.yaml` true to the code (`vigil.dvc_deps`). ARCHITECTURE.md maps it.

`components/` (pure library) -> `tasks/` (Prefect tasks and adapters) -> `flows/` (flows) ->
this package. Four of its modules are foundations the layers below may import, and they import
nothing above `components/`: `vigil.plumbing` (a leaf), `vigil.config` (the typed parameters a
flow receives), `vigil.workspace` and `vigil.run_lock` (the checkout's folders and its lock).

Importing the package sets the console defaults every command wants before Prefect is imported.
"""

from vigil.plumbing import quiet_prefect

quiet_prefect()
