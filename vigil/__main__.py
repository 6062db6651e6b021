"""The `vigil` command (and ``python -m vigil``): `vigil stage NAME` goes straight to the DVC stage
module `vigil.stages.NAME`; everything else to the command tree, `vigil.cli`.

A stage never loads the command tree, so a stage's code deps in `dvc.yaml` are this file and
what its own module imports (`vigil dvc-deps`), and editing another command reruns no stage.
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # by name, not by an import statement: the stage closure `vigil dvc-deps` computes is what runs
    target = "vigil.stages" if argv[:1] == ["stage"] else "vigil.cli"
    return importlib.import_module(target).main(argv[1:] if target == "vigil.stages" else argv)


if __name__ == "__main__":
    sys.exit(main())
