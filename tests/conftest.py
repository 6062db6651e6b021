"""The tests' fixtures. What they share lies in `tests/support/` (servers, workspaces,
hostile names); a test module imports from there, never from another test module."""

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support import SHARED
from support.servers import postgres

# After each command DVC starts a detached process that sends usage analytics (some twenty a run,
# each importing DVC): the tests' workspaces report nothing anywhere
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# Seconds each test file took in a whole `make test` on 2 cores (setup, call and teardown added
# up), written by `make test-durations`: `make test` starts the longest files first
DURATIONS = Path(__file__).with_name("durations.json")
SLOW_TEST_SECONDS = 30  # what a file not yet measured counts per test marked slow (10 s or more)


def _file(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_collection_modifyitems(session, config, items):
    """The longest files first, each file's tests kept together and in order: spread over
    workers a file at a time (`make test`), the long files start at once and the quick ones
    fill in at the end, instead of a long file starting late and running on while the other
    workers have nothing left. A file's length is its measured seconds (`DURATIONS`) or, for
    one not measured yet, `SLOW_TEST_SECONDS` per slow test. Deterministic, as every xdist
    worker must collect the same order."""
    measured = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    slow = Counter(_file(item.nodeid) for item in items if item.get_closest_marker("slow"))
    files = [_file(item.nodeid) for item in items]
    seconds = {name: measured.get(name, SLOW_TEST_SECONDS * slow[name]) for name in files}
    first_seen = {name: i for i, name in reversed(list(enumerate(files)))}
    items.sort(key=lambda item: (-seconds[_file(item.nodeid)], first_seen[_file(item.nodeid)]))


# `make test-durations`: the controller (the one process when not spread over workers) adds up
# every report's seconds per file, and after a passing run writes them to the file named here
_RECORD = os.environ.get("VIGIL_TEST_DURATIONS")
_seconds: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    if _RECORD:
        _seconds[_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session, exitstatus):
    if _RECORD and not hasattr(session.config, "workerinput") and exitstatus == 0:
        Path(_RECORD).write_text(json.dumps({k: round(v, 1) for k, v in sorted(_seconds.items())}, indent=1) + "\n")


def _folder(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real {name} data absent: {path} does not exist (see ../shared/data/README.md)")
    return path


@pytest.fixture
def nab_root() -> Path:
    return _folder("NAB")


@pytest.fixture
def skab_root() -> Path:
    return _folder("SKAB")


@pytest.fixture
def msl_root() -> Path:
    return _folder("MSL")


@pytest.fixture
def smd_root() -> Path:
    return _folder("SMD")


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session (`support.servers.postgres`): its SQLAlchemy URL."""
    with postgres() as url:
        yield url
