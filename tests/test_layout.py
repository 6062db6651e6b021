import subprocess
import sys

from support import REPO


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

from vigil.dvc_deps import PACKAGES, import_closure, render, stale_stages  # noqa: E402
from vigil.dvc_deps import imported_modules as _imports  # noqa: E402


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
                # one section (LogsConfig, ...) is fine; the whole Config is not
                if p.name in ("cfg", "config") or str(p.annotation).split(".")[-1] in ("Config", "Config | None"):
                    whole.append(f"{mod.__name__}.{name}({p.name})")
    assert whole == []


def test_dvc_yaml_code_deps_are_generated_from_what_each_stage_imports():
    # `vigil dvc-deps` writes them; a stage whose code moved or grew is named here
    from vigil.dvc_deps import DVC_FILES

    for name in DVC_FILES:
        assert stale_stages((REPO / name).read_text()) == [], f"{name}: run `vigil dvc-deps`"


def test_dvc_deps_restores_code_deps_and_keeps_what_was_written_by_hand():
    text = (REPO / "dvc.yaml").read_text()
    by_hand = "      - tasks/mlflow_model.py   # loaded by MLflow from its path, not imported"
    assert by_hand in text
    edited = text.replace("      - flows/evaluate.py\n", "", 1)  # a dep lost
    edited = edited.replace(by_hand, by_hand + "\n      - some/data:\n          cache: false")  # one with options
    edited = edited.replace("      - components/evaluation.py\n", "      - components/no_such_module.py\n", 1)
    assert set(stale_stages(edited)) >= {"evaluate"}
    out = render(edited)
    assert "      - flows/evaluate.py\n" in out and "no_such_module" not in out
    assert by_hand in out and "\n      - some/data:\n          cache: false\n" in out
    assert render(out) == out


# the application shell's foundations: what the layers below may use of it (``run_names``: the
# flow runs' names, which the flows declare)
FOUNDATIONS = {"vigil", "vigil.plumbing", "vigil.config", "vigil.workspace", "vigil.run_lock", "vigil.run_names"}
# and the long-running services, which a flow may run too (``slo-predict`` runs the predictor)
SERVICES = "vigil.services"


def test_plumbing_is_a_leaf_and_only_the_shell_imports_the_rest_of_vigil():
    # tasks and flows may use the shell's foundations (process plumbing, the typed parameters,
    # the checkout's folders and lock), nothing else of it: the shell sits on top of them
    assert _imports(REPO / "vigil" / "plumbing.py") == set()
    assert _imports(REPO / "vigil" / "__init__.py") == {"vigil", "vigil.plumbing"}
    offenders = {
        str(p.relative_to(REPO)): sorted(
            m
            for m in _imports(p)
            if m.startswith("vigil") and m not in FOUNDATIONS and not (folder == "flows" and m == SERVICES)
        )
        for folder in ("components", "tasks", "flows")
        for p in (REPO / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    # the services stand on tasks and components and the foundations, never on flows or the
    # commands that run them
    services = _imports(REPO / "vigil" / "services.py")
    above = sorted(m for m in services if m.startswith("flows") or (m.startswith("vigil") and m not in FOUNDATIONS))
    assert above == []
    # and the foundations import neither flows nor the rest of the shell
    below = {
        name: sorted(m for m in _imports(REPO / (name.replace(".", "/") + ".py")) if m.startswith("flows"))
        + sorted(
            m
            for m in _imports(REPO / (name.replace(".", "/") + ".py"))
            if m.startswith("vigil") and m not in FOUNDATIONS
        )
        for name in FOUNDATIONS - {"vigil"}
    }
    assert {k: v for k, v in below.items() if v} == {}


def test_flows_modules_define_flows_and_nothing_else():
    # a flow module holds @flow definitions (and deployments.py its deployments); commands,
    # summaries, argument parsing and logic live in vigil/, tasks/ and components/
    import importlib

    from prefect import Flow

    offenders = []
    for path in sorted((REPO / "flows").glob("*.py")):
        if path.name in ("__init__.py", "deployments.py"):
            continue
        mod = importlib.import_module(f"flows.{path.stem}")
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) == mod.__name__ and not isinstance(obj, Flow):
                offenders.append(f"{path.name}: {name}")
        if "argparse" in _imports_any(path) or "sys.argv" in path.read_text():
            offenders.append(f"{path.name}: parses a command line")
    assert offenders == []


def test_the_alerts_store_is_written_by_one_module():
    # tasks/alerts.py owns the store: its schema, its reads and every write; scoring, the
    # stream and the remedy ranker write through its functions (and `Sink`s), never a statement
    tables = {
        "SOURCES",
        "FILES",
        "POINTS",
        "INCIDENTS",
        "ALERTS",
        "RUNS",
        "FEEDBACK",
        "AUDIT",
        "RANKINGS",
        "STORE_INFO",
    }
    offenders = []
    for folder in ("components", "tasks", "flows", "vigil"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "tasks" / "alerts.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") in ("insert", "update", "delete")
                    and node.args
                    and getattr(node.args[0], "id", "") in tables
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_no_flow_reads_params_yaml():
    # a flow receives its parameters parsed (typed sections or plain values) from its caller
    offenders = []
    for path in sorted((REPO / "flows").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "load_config",
                "parse_config",
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def _imports_any(path) -> set[str]:
    """Every module name ``path`` imports, of the repo or not."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def test_the_closure_sees_what_a_module_imports():
    # the checker itself: the evaluate stage runs the threshold code through components.evaluation
    files = {str(p.relative_to(REPO)) for p in import_closure("flows.evaluate")}
    assert "components/thresholds.py" in files
    assert "components/evaluation.py" in files
    assert "flows/prepare.py" not in files


def test_no_module_imports_a_private_name_of_another():
    # a name with a leading underscore is its module's own; what others need is public
    offenders = []
    for folder in ("components", "tasks", "flows", "vigil"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGES)):
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    offenders += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in private]
    assert offenders == []


def test_no_test_module_imports_another():
    # what tests share lies in tests/support/; a test module is run, never imported
    offenders = {}
    for path in (REPO / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        bad = sorted(m for m in names if m.split(".")[0].startswith("test_") or m.split(".")[0] == "conftest")
        if bad:
            offenders[path.name] = bad
    assert offenders == {}
