"""What the tests share, once each: the servers they start for real (MLflow, Prefect,
PostgreSQL, Chromium's WebDriver), a Vigil workspace (a git + DVC repository with the code)
and the commands run in it, and hostile names. Test modules import from here, never from one
another; `tests/conftest.py` holds the fixtures."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
