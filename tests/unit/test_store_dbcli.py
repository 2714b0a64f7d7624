"""``db_url``/``BRIDGE_DB_URL``/``--db``, ``bridge db check|upgrade`` and ``serve`` refusing a
database that is behind (one line naming the command, exit 1)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import ConfigError, load_config, with_overrides
from bridge.store.migrate import head_revision

DATA = Path(__file__).resolve().parents[1] / "data" / "store"


def test_database_setting_precedence(tmp_path: Path) -> None:
    assert load_config(env={}).database == Path("var/bridge.sqlite3")
    toml = tmp_path / "b.toml"
    toml.write_text('db_url = "postgresql://bridge@db.example/bridge"\n')
    assert load_config(toml, env={}).database == "postgresql://bridge@db.example/bridge"
    env = {"BRIDGE_DB_URL": "sqlite:///other.sqlite3"}
    assert load_config(toml, env=env).database == "sqlite:///other.sqlite3"
    # --db PATH wins over everything and means a SQLite file; --db URL is a URL
    assert with_overrides(load_config(toml, env=env), db="x.sqlite3").database == Path(
        "x.sqlite3"
    )
    assert with_overrides(load_config(env={}), db="postgresql://u@/d").database == (
        "postgresql://u@/d"
    )
    assert load_config(env={"BRIDGE_DB": "y.sqlite3"}).database == Path("y.sqlite3")
    bad = tmp_path / "bad.toml"
    bad.write_text('db_url = "mysql://x/y"\n')
    with pytest.raises(ConfigError, match="db_url"):
        load_config(bad, env={}).validate()


def test_db_check_and_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.sqlite3"
    shutil.copy(DATA / "legacy_v2.sqlite3", db)
    assert main(["db", "check", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "schema revision 0002" in err and "pending: 0003" in err
    assert "bridge db upgrade" in err
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    assert f"upgraded from 0002 to {head_revision()}" in capsys.readouterr().out
    assert main(["db", "--db", str(db), "check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", f"sqlite:///{db}"]) == 0
    assert "already up to date" in capsys.readouterr().out
    # usage errors exit 2, as everywhere in the CLI
    assert main(["db"]) == 2
    assert main(["db", "frob"]) == 2
    capsys.readouterr()
    # a database that cannot be reached is refused (1), in one line
    assert main(["db", "check", "--db", "postgresql://nobody@/x?host=/nonexistent"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_serve_refuses_a_database_that_is_behind(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    shutil.copy(DATA / "legacy_v2.sqlite3", db)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--db", str(db), "--sip-listen",
         "127.0.0.1:5999", "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"bridge: the database {db} is at schema revision 0002, this bridge needs "
        f"{head_revision()}: run `bridge db upgrade`"
    ]
    conn = sqlite3.connect(db)  # nothing was migrated
    try:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (2,)
    finally:
        conn.close()
