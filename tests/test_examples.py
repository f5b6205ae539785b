"""The README's first Quickstart command runs `examples/checkout.py` on a SQLite file: it must
keep working, so it runs here as a user would run it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_checkout_example_runs_to_its_result_on_a_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "example.db"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "checkout.py")],
        cwd=tmp_path,
        env=dict(os.environ, MAINSPRING_DB=str(database)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "result: receipt-o-1-" in completed.stdout
    assert "status: done" in completed.stdout
    assert "13 WorkflowCompleted" in completed.stdout
    assert database.exists()
