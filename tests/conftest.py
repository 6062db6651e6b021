"""The tests' fixtures. What they share lies in `tests/support/` (servers, workspaces,
hostile names); a test module imports from there, never from another test module."""

import os
from collections import Counter
from pathlib import Path

import pytest
from support import SHARED
from support.servers import postgres

# After each command DVC starts a detached process that sends usage analytics (some twenty a run,
# each importing DVC): the tests' workspaces report nothing anywhere
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def pytest_collection_modifyitems(session, config, items):
    """The modules with the most slow tests first, each module's tests kept together and in
    order: spread over workers a file at a time (`make test`), the long files start at once
    and the quick ones fill in at the end, instead of a long file starting last and running
    alone. Deterministic, as every xdist worker must collect the same order."""
    slow = Counter(item.module.__name__ for item in items if item.get_closest_marker("slow"))
    first_seen = {name: i for i, name in reversed(list(enumerate(item.module.__name__ for item in items)))}
    items.sort(key=lambda item: (-slow[item.module.__name__], first_seen[item.module.__name__]))


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
