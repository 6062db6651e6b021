from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _folder(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real {name} data absent: {path} does not exist (see ../shared/data/README.md)")
    return path


@pytest.fixture
def nab_root() -> Path:
    return _folder("NAB")


@pytest.fixture
def msl_root() -> Path:
    return _folder("MSL")


@pytest.fixture
def smd_root() -> Path:
    return _folder("SMD")
