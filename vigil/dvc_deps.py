"""The code deps of `dvc.yaml` and `reports/dvc.yaml` (`DVC_FILES`), generated from the code: a
stage's deps are the repo files its command imports (at any depth, imports inside functions
included: they run too), so `dvc repro` reruns a stage exactly when code it runs changed, and
code can live where it belongs.

`vigil dvc-deps` rewrites the code entries of every stage's ``deps`` in place; `--check` says
which stages are stale (a test runs it). Hand-written entries stay: data and `${...}` paths,
and any entry with a comment, which is how a stage names a file it runs without importing it
(a model's code that MLflow loads from its path).
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import sys
from pathlib import Path

PACKAGES = ("components", "tasks", "flows", "vigil")
# the pipelines: the operator's, and the long reports run as their own targets (stages run at the root)
DVC_FILES = ("dvc.yaml", "reports/dvc.yaml")
REPO = Path(__file__).resolve().parents[1]


def module_file(module: str, root: Path = REPO) -> Path | None:
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Every repo module that ``path`` imports, at any depth of its code, with the packages each
    passes through (importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    package = package.removesuffix(".__init__") if path.name == "__init__.py" else package.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in PACKAGES:
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in found if module_file(m, root) is not None}


def import_closure(module: str, root: Path = REPO) -> set[Path]:
    """The files of every repo module that running ``module`` executes."""
    parts = module.split(".")
    seen, todo = set(), [module] + [".".join(parts[:i]) for i in range(1, len(parts))]
    while todo:
        path = module_file(todo.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(imported_modules(path, root))
    return seen


def stage_modules(cmd: str) -> list[str]:
    """The modules a stage's command runs: `python -m vigil stage NAME ...` runs the `vigil`
    dispatch (vigil/__main__.py) and the stage's module, vigil.stages.NAME; `python -m MODULE`
    runs MODULE."""
    words = shlex.split(cmd)
    if words[:2] != ["python", "-m"] or len(words) < 3:
        raise ValueError(f"a stage runs `python -m vigil stage NAME ...` or `python -m <module> ...`, not {cmd!r}")
    if words[2:4] == ["vigil", "stage"] and len(words) > 4:
        return ["vigil.__main__", f"vigil.stages.{words[4]}"]
    return [words[2]]


def _python_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def code_deps(modules: list[str], root: Path = REPO) -> list[str]:
    """The closure of ``modules`` as dvc deps: a folder where the closure holds every Python file
    under it (the highest such folder), else the files."""
    files = set().union(*(import_closure(m, root) for m in modules))
    out: set[str] = set()
    for f in files:
        rel = f.relative_to(root)
        entry = rel
        for depth in range(1, len(rel.parts)):  # highest folder first: the package itself
            folder = Path(*rel.parts[:depth])
            if _python_files(root / folder) <= files:
                entry = folder
                break
        out.add(entry.as_posix())
    return sorted(out)


_STAGE = re.compile(r"^  (\w[\w-]*):\s*$")
_ITEM = re.compile(r"^      - (\S+)(\s+#.*)?$")


def _is_code(entry: str) -> bool:
    return "${" not in entry and entry.split("/")[0] in PACKAGES


def _entry(item: str) -> tuple[str, bool]:
    """(path, written by hand) of a deps line: one with a comment, or of another shape (a path
    with options), is the author's and stays as it is."""
    m = _ITEM.match(item)
    return (m.group(1), bool(m.group(2))) if m else (item.strip(), True)


def render(text: str, root: Path = REPO) -> str:
    """``dvc.yaml``'s text with each stage's code deps regenerated, everything else as it was."""
    lines, out = text.splitlines(), []
    stage = cmd = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _STAGE.match(line):
            stage, cmd = m.group(1), None
        elif line.startswith("    cmd:"):
            cmd = line.split(":", 1)[1].strip()
        elif line == "    deps:" and stage is not None:
            if cmd is None:
                raise ValueError(f"dvc.yaml: stage {stage}: `cmd` must come before `deps`")
            items: list[str] = []
            while i + 1 < len(lines) and (lines[i + 1].startswith("      ") or not lines[i + 1].strip()):
                i += 1
                if lines[i].startswith("      - "):
                    items.append(lines[i])
                elif lines[i].strip() and items:  # an option of the entry above
                    items[-1] += "\n" + lines[i]
            entries = [(it, *_entry(it)) for it in items]
            data = [it for it, path, _ in entries if not _is_code(path)]
            by_hand = [it for it, path, commented in entries if _is_code(path) and commented]
            named = {path for _, path, commented in entries if commented}
            generated = [f"      - {d}" for d in code_deps(stage_modules(cmd), root) if d not in named]
            out += [line, *data, *generated, *by_hand]
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def stale_stages(text: str, root: Path = REPO) -> list[str]:
    """The stages whose code deps differ from what their command imports."""
    import yaml

    now = yaml.safe_load(text)["stages"]
    want = yaml.safe_load(render(text, root))["stages"]
    deps = lambda stage: sorted(map(str, stage.get("deps", [])))  # an entry with options is a mapping
    return [name for name in now if deps(now[name]) != deps(want[name])]


def main(argv: list[str] | None = None, root: Path = REPO) -> int:
    parser = argparse.ArgumentParser(prog="vigil dvc-deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1, naming them, if any stage's deps are stale")
    args = parser.parse_args(argv)
    status = 0
    for name in DVC_FILES:
        path = root / name
        text = path.read_text()
        if args.check:
            stale = stale_stages(text, root)
            if stale:
                print(f"{name}: stale code deps in {', '.join(stale)}; run `vigil dvc-deps`", file=sys.stderr)
                status = 1
            else:
                print(f"{name}: every stage's code deps match what it imports")
            continue
        new = render(text, root)
        if new != text:
            path.write_text(new)
        print(f"{name}: code deps {'rewritten' if new != text else 'already current'}")
    return status
