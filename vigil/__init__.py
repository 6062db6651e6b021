"""Vigil's application shell: what runs the library and the flows for a person or a machine
(the command tree, the process plumbing, the tooling that keeps `dvc.yaml` true to the code).

`components/` (pure library) -> `tasks/` (Prefect tasks and adapters) -> `flows/` (flows);
this package sits on top. Its leaf module `vigil.plumbing` (ports, process ownership) imports
nothing of the repo, so tasks and flows may use it too.
"""
