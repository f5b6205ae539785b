"""The rules as a store written in Python sees them (`_core.Rules`): a group of requests
decided in one call, the plan of each, the fencing that makes persisting them safe in any
order, and records that survive their rows."""

from __future__ import annotations

import asyncio

import pytest

from mainspring import _core
from mainspring._protocol import COMMAND_COMPLETE_WORKFLOW
from mainspring.errors import (
    StaleTaskError,
    StorageConflictError,
    StorageError,
    WorkflowNotRunningError,
)
from mainspring.storage import VirtualClock

from .dict_tables import DictTables, dict_storage

NOW = 1_000_000


def _rules() -> _core.Rules:
    return _core.Rules(12345)


def _decided(outcomes: list[_core.Decision | BaseException]) -> list[_core.Decision]:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, _core.Decision)]


async def _started(tables: DictTables, rules: _core.Rules) -> _core.RunRecord:
    (start,) = _decided(
        rules.decide(NOW, [_core.RuleRequest.start_workflow("w", "r", "t", "q", b"null", None)])
    )
    assert start.inserts_run and start.expected_version is None
    key = await tables.persist(None, start, "test")
    run = await tables.run(key)
    assert run is not None
    return run


async def test_a_group_is_decided_in_one_call_and_each_request_sees_the_ones_before() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    first, second = _decided(
        rules.decide(
            NOW,
            [
                _core.RuleRequest.signal_workflow(run, "a", b"1"),
                _core.RuleRequest.signal_workflow(run, "b", b"2"),
            ],
        )
    )
    assert [event[:2] for event in first.events] == [(2, "WorkflowSignaled")]
    assert [event[:2] for event in second.events] == [(3, "WorkflowSignaled")]
    assert first.expected_version == run.version
    assert first.run is not None and second.expected_version == first.run.version
    # Persisted in order, both hold.
    await tables.persist(run.key, first, "test")
    await tables.persist(run.key, second, "test")
    stored = await tables.run(run.key)
    assert stored is not None and stored.history_length == 3


async def test_a_write_decided_on_a_state_never_stored_is_refused() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    first, second = _decided(
        rules.decide(
            NOW,
            [
                _core.RuleRequest.signal_workflow(run, "a", b"1"),
                _core.RuleRequest.signal_workflow(run, "b", b"2"),
            ],
        )
    )
    # The first is lost (its write failed, say): the second, chained on it, cannot land on
    # whatever the run is now, even if another writer moved it on meanwhile.
    (other,) = _decided(rules.decide(NOW, [_core.RuleRequest.signal_workflow(run, "c", b"3")]))
    await tables.persist(run.key, other, "test")
    with pytest.raises(StorageConflictError):
        await tables.persist(run.key, second, "test")
    with pytest.raises(StorageConflictError):
        await tables.persist(run.key, first, "test")
    stored = await tables.run(run.key)
    assert stored is not None and stored.history_length == 2


async def test_versions_are_unique_so_two_decisions_on_one_state_never_both_hold() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    (one,) = _decided(rules.decide(NOW, [_core.RuleRequest.signal_workflow(run, "a", b"1")]))
    (two,) = _decided(rules.decide(NOW, [_core.RuleRequest.signal_workflow(run, "b", b"2")]))
    assert one.run is not None and two.run is not None
    assert one.run.version != two.run.version
    await tables.persist(run.key, two, "test")
    with pytest.raises(StorageConflictError):
        await tables.persist(run.key, one, "test")


async def test_a_refusal_decided_on_another_requests_outcome_is_a_conflict_to_retry() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    # A worker holds the task ...
    (leased,) = _decided(rules.decide(NOW, [_core.RuleRequest.lease_workflow_task(run, 10_000)]))
    await tables.persist(run.key, leased, "test")
    held = leased.run
    assert held is not None
    token = held.workflow_lease(b"")
    assert token is not None
    run_lease_token = token[5]
    # ... and in one group, a request that terminates the run comes before its commit: the
    # commit, decided on a closed run that may never be stored, is a conflict (decide again),
    # not a refusal the worker would act on.
    outcome = _core.WorkflowRun()
    outcome.add_events(_core.join_rows(await tables.event_rows(held.key, 1, 1)))
    assert outcome.next_activation(NOW) is not None
    encoded = outcome.complete([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    results = rules.decide(
        NOW,
        [
            _core.RuleRequest.terminate_workflow(held, "stop"),
            _core.RuleRequest.complete_workflow_task(held, run_lease_token, encoded, 1, None, 0),
        ],
    )
    assert isinstance(results[0], _core.Decision)
    assert isinstance(results[1], StorageConflictError)
    # Decided on its own record, the commit holds; the termination then conflicts.
    (commit,) = _decided(
        rules.decide(
            NOW,
            [_core.RuleRequest.complete_workflow_task(held, run_lease_token, encoded, 1, None, 0)],
        )
    )
    await tables.persist(held.key, commit, "test")
    with pytest.raises(StorageConflictError):
        await tables.persist(held.key, results[0], "test")
    # A refusal on the request's own record is the refusal.
    stale = rules.decide(
        NOW,
        [_core.RuleRequest.complete_workflow_task(held, run_lease_token + 1, encoded, 1, None, 0)],
    )
    assert isinstance(stale[0], StaleTaskError)
    done = await tables.run(held.key)
    assert done is not None and not done.is_running
    closed = rules.decide(NOW, [_core.RuleRequest.signal_workflow(done, "late", b"null")])
    assert isinstance(closed[0], WorkflowNotRunningError)


async def test_records_survive_their_rows_and_a_corrupt_row_is_refused() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    assert _core.RunRecord.from_row(run.row()).row() == run.row()
    broken = (*run.row()[:8], 9, *run.row()[9:])  # no such task state
    with pytest.raises(StorageError, match="corrupt record"):
        _core.RunRecord.from_row(broken)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns"):
        _core.RunRecord.from_row(run.row()[:5])  # type: ignore[arg-type]


async def test_a_group_of_many_requests_on_one_run_chains_them_all() -> None:
    tables, rules = DictTables(), _rules()
    run = await _started(tables, rules)
    decisions = _decided(
        rules.decide(NOW, [_core.RuleRequest.signal_workflow(run, f"s{n}", b"1") for n in range(5)])
    )
    assert [decision.events[0][0] for decision in decisions] == [2, 3, 4, 5, 6]
    for decision in decisions:  # in order, every one holds
        await tables.persist(run.key, decision, "test")
    stored = await tables.run(run.key)
    assert stored is not None and stored.history_length == 6


async def test_many_signals_to_one_workflow_at_once_all_land_on_a_python_store() -> None:
    storage = dict_storage(VirtualClock())
    await storage.start_workflow("w", "r", "t", "q", b"null")
    await asyncio.gather(*(storage.signal_workflow("w", f"s{n}", b"1") for n in range(20)))
    description = await storage.describe_workflow("w")
    assert description.history_length == 21
