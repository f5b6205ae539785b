"""The `mainspring` console script, driven in subprocesses against a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainspring import History

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "mainspring"


def cli(database: Path, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--db", str(database), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def worker(database: Path) -> Iterator[subprocess.Popen[str]]:
    # Database and task queue from the environment, as a deployment would set them.
    environment = dict(os.environ, MAINSPRING_DB=str(database), MAINSPRING_TASK_QUEUE="cli")
    process = subprocess.Popen(
        [str(SCRIPT), "worker", "tests.cli_app"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)  # graceful: stops polling, finishes running work
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors


def test_the_console_script_and_python_dash_m_are_the_same_program(database: Path) -> None:
    assert SCRIPT.exists()
    via_module = subprocess.run(
        [sys.executable, "-m", "mainspring", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert via_module.returncode == 0
    assert cli(database, "--help").stdout == via_module.stdout


def test_start_result_list_describe_and_history(
    database: Path, worker: subprocess.Popen[str]
) -> None:
    started = cli(database, "workflow", "start", "greet", "--id", "g1", "--task-queue", "cli",
                  "--input", '"ann"', "--json")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["workflow_id"] == "g1"
    result = cli(database, "workflow", "result", "g1", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "hello ANN"

    listing = cli(
        database, "workflow", "list", "--status", "completed", "--type", "greet", "--json"
    )
    assert [run["workflow_id"] for run in json.loads(listing.stdout)] == ["g1"]
    assert cli(database, "workflow", "list", "--status", "running", "--json").stdout.strip() == "[]"
    assert cli(database, "workflow", "list", "--limit", "0", "--json").stdout.strip() == "[]"
    unknown = cli(database, "workflow", "list", "--status", "asleep")
    assert unknown.returncode == 2 and "RUNNING" in unknown.stderr
    table = cli(database, "workflow", "list").stdout.splitlines()
    assert table[0].split() == ["WORKFLOW_ID", "TYPE", "STATUS", "EVENTS", "STARTED"]
    assert table[1].split()[:3] == ["g1", "greet", "COMPLETED"]

    described = json.loads(cli(database, "workflow", "describe", "g1", "--json").stdout)
    assert described["status"] == "COMPLETED"

    timeline = cli(database, "workflow", "history", "g1").stdout
    assert "ActivityScheduled" in timeline and 'input="ann"' in timeline
    exported = cli(database, "workflow", "history", "g1", "--json").stdout
    assert len(History.from_json(exported)) == 6  # started, task, activity, result, task, done


def test_signal_query_cancel_and_terminate(database: Path, worker: subprocess.Popen[str]) -> None:
    assert (
        cli(database, "workflow", "start", "gated", "--id", "q1", "--task-queue", "cli").returncode
        == 0
    )
    query = cli(database, "workflow", "query", "q1", "Stage")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == "waiting"
    # Checked against the worker's signal class: a payload it would drop is not sent.
    module = ("--module", "tests.cli_app")
    wrong = cli(database, "workflow", "signal", "q1", "Proceed", "--input", '{"note": 7}', *module)
    assert wrong.returncode == 1
    assert "not sent: the payload is not a Proceed" in wrong.stderr
    unknown = cli(database, "workflow", "signal", "q1", "Procede", "--input", "{}", *module)
    assert unknown.returncode == 1 and "declares no signal named 'Procede'" in unknown.stderr
    assert "Proceed" in unknown.stderr
    signalled = cli(
        database, "workflow", "signal", "q1", "Proceed", "--input", '{"note": "go"}', *module
    )
    assert signalled.returncode == 0, signalled.stderr
    assert "not checked" not in signalled.stderr
    assert json.loads(cli(database, "workflow", "result", "q1").stdout) == "go"
    assert (
        json.loads(cli(database, "workflow", "describe", "q1", "--json").stdout)["dropped_signals"]
        == 0
    )

    cli(database, "workflow", "start", "gated", "--id", "q2", "--task-queue", "cli")
    # Without the module it is sent as given, and the CLI says it was not checked.
    unchecked = cli(database, "workflow", "signal", "q2", "Nothing", "--input", "{}")
    assert unchecked.returncode == 0
    assert "not checked against the signal's type" in unchecked.stderr
    assert cli(database, "workflow", "cancel", "q2", "--reason", "test").returncode == 0
    cancelled = cli(database, "workflow", "result", "q2")
    assert cancelled.returncode == 1
    assert (
        cancelled.stderr.strip()
        == "mainspring: error: WorkflowCanceledError: workflow q2 was cancelled"
    )

    cli(database, "workflow", "start", "gated", "--id", "q3", "--task-queue", "cli")
    assert cli(database, "workflow", "terminate", "q3", "--reason", "ops").returncode == 0
    described = json.loads(cli(database, "workflow", "describe", "q3", "--json").stdout)
    assert described["status"] == "TERMINATED"


def test_user_mistakes_are_one_line_and_a_non_zero_exit(database: Path) -> None:
    for arguments, message in (
        (("workflow", "describe", "missing"), "WorkflowNotFoundError"),
        (("workflow", "start", "greet", "--id", "x", "--task-queue", "q", "--input", "{nope"),
         "--input is not JSON"),
        (("workflow", "signal", "missing", "Proceed"), "WorkflowNotFoundError"),
        (("replay", "nowhere.json", "--workflows", "tests.cli_app"), "no such file"),
        (("replay", str(ROOT / "tests"), "--workflows", "no.such.module"), "cannot import"),
    ):  # fmt: skip
        completed = cli(database, *arguments)
        assert completed.returncode == 1, arguments
        assert message in completed.stderr
        assert "Traceback" not in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    usage = cli(database, "workflow", "frobnicate")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_replay_reports_non_determinism_with_the_event_and_both_commands(
    database: Path, worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    cli(
        database,
        "workflow",
        "start",
        "greet",
        "--id",
        "r1",
        "--task-queue",
        "cli",
        "--input",
        '"bo"',
    )
    assert cli(database, "workflow", "result", "r1").returncode == 0
    folder = tmp_path / "histories"
    folder.mkdir()
    (folder / "r1.json").write_text(cli(database, "workflow", "history", "r1", "--json").stdout)

    good = cli(database, "replay", str(folder), "--workflows", "tests.cli_app")
    assert good.returncode == 0, good.stderr
    assert "1 of 1 histories replay" in good.stdout

    bad = cli(
        database, "replay", str(folder / "r1.json"), "--workflows", "tests.cli_app_edited", "--json"
    )
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["failed"] == [
        {
            "file": str(folder / "r1.json"),
            "event_id": 3,
            "recorded": "ScheduleActivity(seq=1, type=shout)",
            "issued": "StartTimer(seq=1, duration_ms=1000)",
        }
    ]
