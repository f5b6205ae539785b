"""A worker process for `postgres_scenarios.py`: ``python -m benches.postgres_worker URL`` runs
a worker at ``WorkerConfig()`` defaults for the benches' workflows until terminated."""

from __future__ import annotations

import sys

import mainspring
from mainspring import Client, Worker

from .conftest import no_op, three_no_ops
from .postgres_scenarios import QUEUE


async def work(url: str) -> None:
    worker = Worker(Client(url), task_queue=QUEUE, workflows=[three_no_ops], activities=[no_op])
    await worker.run()


if __name__ == "__main__":
    mainspring.run(work(sys.argv[1]))
