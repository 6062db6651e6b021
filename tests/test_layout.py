import subprocess
import sys

from conftest import REPO


def test_import_mlflow_reaches_the_installed_package():
    # Run from the repo root, where a stray mlflow/__init__.py would shadow the package.
    out = subprocess.run(
        [sys.executable, "-c", "import mlflow; print(mlflow.__file__); print(mlflow.__version__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "site-packages" in out[0]
    assert out[1].startswith("3.")
    assert not (REPO / "mlflow" / "__init__.py").exists()
    assert not (REPO / "mlflow" / "mlflow.py").exists()


def test_components_import_no_orchestration_libraries():
    code = (
        "import sys, components.datasets, components.preprocessing, components.detectors, "
        "components.thresholds, components.metrics, components.attribution, components.evaluation, "
        "components.logs.formats, components.logs.reference, components.feedback, components.remedies, "
        "components.remedy_simulation\n"
        "bad = [m for m in ('prefect', 'mlflow', 'dvc', 'great_expectations') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- dependencies point one way: flows -> tasks -> components ---------------------------------

import ast  # noqa: E402
import inspect  # noqa: E402
import shlex  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

PACKAGES = ("components", "tasks", "flows")


def _module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """Every module inside the repo that ``path`` imports, at any depth of its code (imports
    inside functions count: they run too), with the packages each passes through."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.removesuffix(".__init__")
    else:
        package = package.rpartition(".")[0]
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
            if name.split(".")[0] not in PACKAGES:
                continue
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in found if _module_file(m) is not None}


def import_closure(module: str) -> set[Path]:
    """The files of every repo module that importing (and running) ``module`` executes."""
    seen, todo = set(), [module]
    parts = module.split(".")
    todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    while todo:
        m = todo.pop()
        path = _module_file(m)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return seen


def test_tasks_never_import_flows():
    offenders = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m.startswith("flows"))
        for p in (REPO / "tasks").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_components_import_neither_tasks_nor_flows():
    offenders = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p) if not m.startswith("components"))
        for p in (REPO / "components").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_task_takes_the_whole_config():
    import importlib

    from prefect import Task

    whole = []
    for path in (REPO / "tasks").glob("*.py"):
        mod = importlib.import_module(f"tasks.{path.stem}")
        for name, obj in vars(mod).items():
            fn = obj.fn if isinstance(obj, Task) else obj
            if not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name in ("cfg", "config") or "Config" in str(p.annotation).split(".")[-1].split("[")[0]:
                    whole.append(f"{mod.__name__}.{name}({p.name})")
    assert whole == []


def _stage_module(cmd: str) -> str:
    words = shlex.split(cmd)
    assert words[:2] == ["python", "-m"], f"a stage runs `python -m <module>`: {cmd}"
    return words[2]


def test_every_dvc_stage_lists_the_code_it_runs_as_deps():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = {}
    for name, stage in stages.items():
        deps = [REPO / d for d in stage.get("deps", []) if "${" not in d]
        files = import_closure(_stage_module(stage["cmd"]))
        uncovered = sorted(str(f.relative_to(REPO)) for f in files if not any(f == d or d in f.parents for d in deps))
        if uncovered:
            missing[name] = uncovered
    assert missing == {}, "add these to the stages' deps in dvc.yaml"


def test_the_closure_sees_what_a_module_imports():
    # the checker itself: the evaluate stage runs the threshold code through components.evaluation
    files = {str(p.relative_to(REPO)) for p in import_closure("flows.evaluate")}
    assert "components/thresholds.py" in files
    assert "components/evaluation.py" in files
    assert "flows/prepare.py" not in files
