"""The tests' fixtures. What they share lies in `tests/support/` (servers, workspaces,
hostile names); a test module imports from there, never from another test module."""

from pathlib import Path

import pytest
from support import SHARED
from support.servers import postgres


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
