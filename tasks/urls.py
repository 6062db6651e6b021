"""Database URLs as params.yaml writes them, made concrete for a checkout: the alerts store,
the Optuna storage and the MLflow tracking store all take relative SQLite paths from it."""

from __future__ import annotations

from pathlib import Path


def storage_url(url: str, root: Path, make_folder: bool = True) -> str:
    """A relative SQLite path is taken from the checkout (``root``), and its folder is made
    (unless ``make_folder`` is false: a reader that must not create the store)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path = path if path.is_absolute() else Path(root).resolve() / path
        if make_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def shown_url(url: str) -> str:
    """The storage URL without its password: what logs, files and MLflow record."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store, None for any other database. With ``uri=true`` SQLite reads
    the database name as a URI (``sqlite:///file:/path/alerts.db?mode=ro&uri=true``): its file is
    the URI's path, not a folder named ``file:`` in the working directory."""
    if not url.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(database).path))
    return Path(database)
