"""Storage URLs: what `Client(url)`, the CLI's ``--db`` and ``$MAINSPRING_DB`` accept, and that
anything else is refused by name instead of becoming a file path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mainspring import Client
from mainspring.errors import InvalidStorageUrlError
from mainspring.storage import MemoryStorage, SqliteStorage
from mainspring.storage.urls import open_storage, postgres_dsn, sqlite_path

ROOT = Path(__file__).resolve().parent.parent


def test_sqlite_urls_follow_sqlalchemys_slashes_and_plain_paths_stay_paths() -> None:
    assert sqlite_path("sqlite:///relative/app.db") == "relative/app.db"
    assert sqlite_path("sqlite:////srv/app.db") == "/srv/app.db"
    assert sqlite_path("app.db") == "app.db"
    assert sqlite_path("./data/app.db") == "./data/app.db"
    assert sqlite_path(Path("/srv/app.db")) == "/srv/app.db"
    assert sqlite_path("C:\\data\\app.db") == "C:\\data\\app.db"  # a drive letter, no scheme
    with pytest.raises(InvalidStorageUrlError, match="three slashes"):
        sqlite_path("sqlite://app.db")


def test_a_postgres_url_gives_mainspring_its_parameters_and_asyncpg_the_rest() -> None:
    dsn, options = postgres_dsn(
        "postgresql://app@db:5433/prod?schema=orders&sslmode=require&migrate=false"
    )
    assert dsn == "postgresql://app@db:5433/prod?sslmode=require"
    assert options == {"schema": "orders", "migrate": False}
    assert postgres_dsn("postgres://app@db/prod") == ("postgres://app@db/prod", {})
    with pytest.raises(InvalidStorageUrlError, match="migrate"):
        postgres_dsn("postgresql://app@db/prod?migrate=sometimes")
    assert postgres_dsn("postgresql://app@db/prod?pool_size=20")[1] == {"pool_size": 20}
    with pytest.raises(InvalidStorageUrlError, match="pool_size"):
        postgres_dsn("postgresql://app@db/prod?pool_size=0")
    assert postgres_dsn("postgresql://app@db/prod?pgbouncer=true")[1] == {"pgbouncer": True}


async def test_each_form_opens_its_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    memory = open_storage("memory:")
    assert isinstance(memory, MemoryStorage)
    relative = open_storage("sqlite:///data/a.db")
    absolute = open_storage(f"sqlite:///{tmp_path}/b.db")  # four slashes: an absolute path
    plain = open_storage("c.db")
    for storage in (relative, absolute, plain):
        assert isinstance(storage, SqliteStorage)
        await storage.close()
    assert sorted(path.name for path in tmp_path.rglob("*.db")) == ["a.db", "b.db", "c.db"]
    assert (tmp_path / "data" / "a.db").exists()
    pytest.importorskip("asyncpg")
    from mainspring.storage.postgres import PostgresStorage

    postgres = open_storage("postgresql://app@db.invalid/prod?schema=orders")
    assert isinstance(postgres, PostgresStorage)  # connects on first use, not here
    assert postgres.schema == "orders" and postgres.tables.dsn == "postgresql://app@db.invalid/prod"


def test_an_unknown_scheme_is_refused_by_name_and_makes_no_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("mysql://u@h/db", "postgresq://u@h/db", "redis://h"):
        with pytest.raises(InvalidStorageUrlError, match="accepted: memory:") as refused:
            open_storage(url)
        assert "postgresql://" in str(refused.value)
    with pytest.raises(InvalidStorageUrlError):
        open_storage("memory:extra")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if asyncpg were not installed: its import fails, and so does the store's.
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    for name in [name for name in sys.modules if name.startswith("mainspring.storage.postgres")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(InvalidStorageUrlError, match=r"mainspring\[postgres\]"):
        open_storage("postgresql://u@h/db")


async def test_client_and_mainspring_db_take_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAINSPRING_DB", f"sqlite:///{tmp_path}/from-env.db")
    client = Client()
    assert isinstance(client.storage, SqliteStorage)
    assert client.storage.path == f"{tmp_path}/from-env.db"
    await client.close()
    monkeypatch.setenv("MAINSPRING_DB", "memory:")
    client = Client()
    assert isinstance(client.storage, MemoryStorage)
    await client.close()


def test_the_cli_refuses_an_unknown_url_without_making_folders(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "mainspring", "--db", "mysql://u@h/db", "workflow", "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert finished.returncode != 0
    assert "InvalidStorageUrlError" in finished.stderr and "accepted:" in finished.stderr
    assert list(tmp_path.iterdir()) == []
