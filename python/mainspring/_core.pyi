"""Type stubs for the native module ``mainspring._core`` (rust/bindings).

Checked against the built extension by ``mypy.stubtest`` in CI. The tuple layouts that cross
the boundary are named in ``mainspring._protocol``.
"""

from typing import Any, final

from mainspring._protocol import (
    Activation,
    ActivityLeaseTuple,
    ActivityRowTuple,
    FailureTuple,
    MemoryLeaseTuple,
    RunRowTuple,
    SummaryTuple,
    WorkflowLeaseTuple,
)

HISTORY_FORMAT_VERSION: int
ENGINE_FLAGS: int
WORKFLOW_STATUSES: tuple[str, ...]
FLAG_TASK_FAILURES: int
FLAG_STAGED_JOBS: int
SQLITE_SCHEMA_VERSION: int

__all__ = [
    "ENGINE_FLAGS",
    "FLAG_STAGED_JOBS",
    "FLAG_TASK_FAILURES",
    "HISTORY_FORMAT_VERSION",
    "SQLITE_SCHEMA_VERSION",
    "WORKFLOW_STATUSES",
    "ActivityRecord",
    "Decision",
    "MemoryStore",
    "RuleRequest",
    "Rules",
    "RunRecord",
    "SlotPool",
    "SqliteError",
    "SqliteOperation",
    "SqliteStore",
    "WorkflowRun",
    "encode_inbound_row",
    "history_bytes_from_json",
    "history_json_from_bytes",
    "history_outline",
    "join_rows",
    "new_run_id",
    "run_outcome",
    "sqlite_migrations",
    "sqlite_version",
    "upgrade_event_row",
    "validate_history",
]

def history_json_from_bytes(encoded: bytes) -> str: ...
def history_bytes_from_json(text: str) -> bytes: ...
def validate_history(encoded: bytes) -> int: ...
def history_outline(encoded: bytes) -> list[tuple[int, int, str]]: ...
def run_outcome(encoded: bytes) -> tuple[str, Any] | None: ...

# Event rows, as a store stores them (what a worker feeds an instance running ahead).
def encode_inbound_row(
    event_id: int, timestamp_ms: int, kind: str, args: tuple[Any, ...]
) -> bytes: ...
def join_rows(rows: list[bytes]) -> bytes: ...
def upgrade_event_row(row: bytes) -> bytes: ...

@final
class WorkflowRun:
    def __new__(cls) -> WorkflowRun: ...
    def add_events(self, encoded: bytes) -> None: ...
    def add_events_then_row(self, encoded: bytes | None, row: bytes) -> None: ...
    @property
    def history_length(self) -> int: ...
    @property
    def is_closed(self) -> bool: ...
    def next_activation(self, now_ms: int, allow_live: bool = True) -> Activation | None: ...
    def complete(self, commands: list[tuple[Any, ...]]) -> bytes | None: ...
    def fail_run(self, now_ms: int, failure: FailureTuple) -> bytes: ...
    def note_dropped_signal(self) -> None: ...
    @property
    def retained_bytes(self) -> int: ...

@final
class MemoryStore:
    def __new__(
        cls,
        workflow_task_retry_initial_ms: int = 1000,
        workflow_task_retry_maximum_ms: int = 60000,
        tick_batch: int = 1000,
    ) -> MemoryStore: ...
    def start_workflow(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        now_ms: int,
    ) -> int: ...
    def poll_workflow_task(
        self, task_queue: str, now_ms: int, lease_ms: int
    ) -> MemoryLeaseTuple | None: ...
    def history(self, run_key: int, from_event_id: int) -> bytes: ...
    def complete_workflow_task(
        self, run_key: int, token: int, outcome: bytes | None, leased_length: int, now_ms: int
    ) -> bool: ...
    def fail_workflow_task(self, run_key: int, token: int, message: str, now_ms: int) -> None: ...
    def poll_activity_task(self, task_queue: str, now_ms: int) -> ActivityLeaseTuple | None: ...
    def complete_activity_task(
        self, run_key: int, scheduled_event_id: int, token: int, result: bytes, now_ms: int
    ) -> None: ...
    def fail_activity_task(
        self,
        run_key: int,
        scheduled_event_id: int,
        token: int,
        failure: FailureTuple,
        now_ms: int,
    ) -> None: ...
    def heartbeat_activity_task(
        self, run_key: int, scheduled_event_id: int, token: int, details: bytes, now_ms: int
    ) -> None: ...
    def signal_workflow(
        self, workflow_id: str, signal_name: str, input: bytes, now_ms: int
    ) -> None: ...
    def request_cancel_workflow(self, workflow_id: str, reason: str, now_ms: int) -> None: ...
    def terminate_workflow(self, workflow_id: str, reason: str, now_ms: int) -> None: ...
    def describe(self, workflow_id: str) -> SummaryTuple: ...
    def list(
        self,
        after_run_key: int | None,
        limit: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> list[SummaryTuple]: ...
    def tick(self, now_ms: int) -> int: ...
    def busy_count(self, now_ms: int) -> int: ...
    def next_wakeup_ms(self, now_ms: int) -> int | None: ...

# SqliteStorage's store (rust/sqlite; rust/bindings/src/sqlite_store.rs, sqlite_operations.rs).
class SqliteError(Exception): ...

def sqlite_version() -> str: ...
def sqlite_migrations() -> list[str]: ...

@final
class SqliteOperation:
    """One operation of the SQLite store; the typed wrappers of
    ``mainspring.storage._sqlite_requests`` say what each returns."""

    @property
    def read_only(self) -> bool: ...
    @staticmethod
    def start_workflow(
        now: int,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        eager_lease_ms: int | None,
    ) -> SqliteOperation: ...
    @staticmethod
    def start_workflow_with_first_task(
        now: int,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        started_row: bytes,
        outcome: bytes,
        eager_queue: str | None,
        eager_slots: int,
        pool: SlotPool | None = None,
    ) -> SqliteOperation: ...
    @staticmethod
    def complete_workflow_task(
        now: int,
        run_key: int,
        token: int,
        outcome: bytes | None,
        leased_length: int,
        eager_queue: str | None,
        eager_slots: int,
        pool: SlotPool | None = None,
    ) -> SqliteOperation: ...
    @staticmethod
    def fail_workflow_task(now: int, run_key: int, token: int, message: str) -> SqliteOperation: ...
    @staticmethod
    def complete_activity_with_workflow_task(
        now: int,
        run_key: int,
        scheduled_event_id: int,
        token: int,
        result_row: bytes,
        expected_length: int,
        outcome: bytes,
        eager_queue: str | None,
        eager_slots: int,
        pool: SlotPool | None = None,
    ) -> SqliteOperation: ...
    @staticmethod
    def complete_activity_task(
        now: int,
        run_key: int,
        scheduled_event_id: int,
        token: int,
        result: bytes,
        eager_queue: str | None,
        eager_lease_ms: int,
    ) -> SqliteOperation: ...
    @staticmethod
    def fail_activity_task(
        now: int, run_key: int, scheduled_event_id: int, token: int, failure: FailureTuple
    ) -> SqliteOperation: ...
    @staticmethod
    def heartbeat_activity_task(
        now: int, run_key: int, scheduled_event_id: int, token: int, details: bytes
    ) -> SqliteOperation: ...
    @staticmethod
    def signal_workflow(
        now: int, workflow_id: str, signal_name: str, input: bytes
    ) -> SqliteOperation: ...
    @staticmethod
    def request_cancel_workflow(now: int, workflow_id: str, reason: str) -> SqliteOperation: ...
    @staticmethod
    def terminate_workflow(now: int, workflow_id: str, reason: str) -> SqliteOperation: ...
    @staticmethod
    def poll_workflow_tasks(
        now: int, task_queue: str, lease_ms: int, max_tasks: int
    ) -> SqliteOperation: ...
    @staticmethod
    def poll_activity_tasks(
        now: int, task_queue: str, max_tasks: int, pool: SlotPool | None = None
    ) -> SqliteOperation: ...
    @staticmethod
    def describe_workflow(now: int, workflow_id: str) -> SqliteOperation: ...
    @staticmethod
    def list_workflows(
        now: int,
        after_run_key: int | None,
        page_size: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> SqliteOperation: ...
    @staticmethod
    def read_history(now: int, run_id: str, from_event_id: int) -> SqliteOperation: ...
    @staticmethod
    def closing_event(now: int, run_id: str) -> SqliteOperation: ...
    @staticmethod
    def closing_events(now: int, run_ids: list[str]) -> SqliteOperation: ...
    @staticmethod
    def submit_query(now: int, workflow_id: str, name: str, input: bytes) -> SqliteOperation: ...
    @staticmethod
    def take_query(now: int, task_queue: str) -> SqliteOperation: ...
    @staticmethod
    def answer_query(
        now: int, query_id: int, result: bytes | None, error: str | None
    ) -> SqliteOperation: ...
    @staticmethod
    def read_answer(now: int, query_id: int, give_up: bool) -> SqliteOperation: ...
    @staticmethod
    def next_wakeup(now: int) -> SqliteOperation: ...
    @staticmethod
    def busy_and_wakeup(now: int) -> SqliteOperation: ...
    @staticmethod
    def data_version(now: int) -> SqliteOperation: ...

@final
class SlotPool:
    """A worker's activity slots, shared with the SQLite store's thread."""

    def __new__(cls, free: int) -> SlotPool: ...
    @property
    def free(self) -> int: ...
    def take(self, wanted: int) -> int: ...
    def give(self, slots: int) -> None: ...
    def was_short(self) -> bool: ...
    @property
    def short_takes(self) -> int: ...

@final
class SqliteStore:
    def __new__(
        cls,
        path: str,
        busy_timeout_ms: int,
        synchronous: str,
        workflow_task_retry_initial_ms: int = 1000,
        workflow_task_retry_maximum_ms: int = 60000,
        tick_batch: int = 1000,
        identity: str | None = None,
    ) -> SqliteStore: ...
    def execute(
        self, sql: str, parameters: Any = None
    ) -> tuple[list[tuple[Any, ...]], int, int]: ...
    def run_group(self, operations: list[SqliteOperation]) -> list[tuple[bool, Any]]: ...
    def submit(self, ticket: int, operations: list[SqliteOperation]) -> None: ...
    def collect(self) -> list[tuple[int, list[tuple[bool, Any]]]]: ...
    def ready_fd(self) -> int: ...
    def close(self) -> None: ...

# The rules for stores written in Python (rust/bindings/src/rules.rs): records made from and
# flattened into rows (layouts in rust/core/src/rules/rows.rs), a group of requests decided in
# one call.
@final
class RunRecord:
    @staticmethod
    def from_row(row: RunRowTuple) -> RunRecord: ...
    def row(self) -> RunRowTuple: ...
    @property
    def key(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_queue(self) -> str: ...
    @property
    def is_running(self) -> bool: ...
    @property
    def history_length(self) -> int: ...
    @property
    def tail_start(self) -> int: ...
    def workflow_lease(self, tail: bytes) -> WorkflowLeaseTuple | None: ...
    def summary(self) -> SummaryTuple: ...

@final
class ActivityRecord:
    @staticmethod
    def from_row(row: ActivityRowTuple) -> ActivityRecord: ...
    def row(self) -> ActivityRowTuple: ...
    @property
    def scheduled_event_id(self) -> int: ...
    @property
    def payload_bytes(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def task_queue(self) -> str: ...
    @property
    def ready_at_ms(self) -> int | None: ...
    @property
    def next_deadline_ms(self) -> int | None: ...
    def lease(self, run: RunRecord) -> ActivityLeaseTuple | None: ...

@final
class RuleRequest:
    @staticmethod
    def start_workflow(
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        eager_lease_ms: int | None,
    ) -> RuleRequest: ...
    @staticmethod
    def start_workflow_with_first_task(
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        started_row: bytes,
        outcome: bytes,
        eager_queue: str | None,
        eager_slots: int,
    ) -> RuleRequest: ...
    @staticmethod
    def lease_workflow_task(run: RunRecord, lease_ms: int) -> RuleRequest: ...
    @staticmethod
    def complete_workflow_task(
        run: RunRecord,
        token: int,
        outcome: bytes | None,
        leased_length: int,
        eager_queue: str | None,
        eager_slots: int,
    ) -> RuleRequest: ...
    @staticmethod
    def fail_workflow_task(run: RunRecord, token: int, message: str) -> RuleRequest: ...
    @staticmethod
    def cancel_activity(run: RunRecord, activity: ActivityRecord) -> RuleRequest: ...
    @staticmethod
    def signal_workflow(run: RunRecord, signal_name: str, input: bytes) -> RuleRequest: ...
    @staticmethod
    def request_cancel_workflow(run: RunRecord, reason: str) -> RuleRequest: ...
    @staticmethod
    def terminate_workflow(run: RunRecord, reason: str) -> RuleRequest: ...
    @staticmethod
    def lease_activity_task(run: RunRecord, activity: ActivityRecord) -> RuleRequest: ...
    @staticmethod
    def complete_activity_task(
        run: RunRecord,
        activity: ActivityRecord,
        token: int,
        result: bytes,
        eager_queue: str | None,
        eager_lease_ms: int,
    ) -> RuleRequest: ...
    @staticmethod
    def complete_activity_with_workflow_task(
        run: RunRecord,
        activity: ActivityRecord,
        token: int,
        result_row: bytes,
        expected_length: int,
        outcome: bytes,
        eager_queue: str | None,
        eager_slots: int,
    ) -> RuleRequest: ...
    @staticmethod
    def fail_activity_task(
        run: RunRecord, activity: ActivityRecord, token: int, failure: FailureTuple
    ) -> RuleRequest: ...
    @staticmethod
    def heartbeat_activity_task(
        run: RunRecord, activity: ActivityRecord, token: int, details: bytes
    ) -> RuleRequest: ...
    @staticmethod
    def fire_timer(run: RunRecord, started_event_id: int, fire_at_ms: int) -> RuleRequest: ...
    @staticmethod
    def expire_workflow_task_lease(run: RunRecord) -> RuleRequest: ...
    @staticmethod
    def apply_activity_deadline(run: RunRecord, activity: ActivityRecord) -> RuleRequest: ...

@final
class Decision:
    @property
    def run(self) -> RunRecord | None: ...
    @property
    def expected_version(self) -> int | None: ...
    @property
    def inserts_run(self) -> bool: ...
    @property
    def events(self) -> list[tuple[int, str, bytes]]: ...
    @property
    def activities(self) -> list[tuple[str, int, int | None, ActivityRecord | None]]: ...
    @property
    def timers(self) -> list[tuple[str, int, int | None]]: ...
    @property
    def drop_pending_work(self) -> bool: ...
    @property
    def is_empty(self) -> bool: ...
    @property
    def wakes_pollers(self) -> bool: ...
    @property
    def leased(self) -> bool: ...
    @property
    def fused(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def activities_to_cancel(self) -> list[int]: ...
    @property
    def leased_activities(self) -> list[ActivityRecord]: ...
    def task_events(self) -> bytes | None: ...
    @property
    def task_history_length(self) -> int | None: ...

@final
class Rules:
    def __new__(
        cls,
        token_seed: int,
        workflow_task_retry_initial_ms: int = 1000,
        workflow_task_retry_maximum_ms: int = 60000,
        tick_batch: int = 1000,
    ) -> Rules: ...
    @property
    def tick_batch(self) -> int: ...
    def decide(
        self, now_ms: int, requests: list[RuleRequest]
    ) -> list[Decision | BaseException]: ...

def new_run_id() -> str: ...
