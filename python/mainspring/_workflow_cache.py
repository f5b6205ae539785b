"""The worker's sticky cache: live workflow instances kept between their tasks, least recently
used first, bounded by count and by the bytes of history they keep."""

from __future__ import annotations

import collections

from ._instance import WorkflowInstance


def retained_bytes(instance: WorkflowInstance) -> int:
    """What an instance keeps of its history: the events its run still needs for replay and
    the encoded events its last commit appended (fed to it on its next task)."""
    appended = instance.appended
    return instance.run.retained_bytes + (len(appended) if appended is not None else 0)


class WorkflowCache:
    """Run id → instance. A taken instance is out of the cache (whoever took it owns it) until
    it is put back: no two tasks ever advance one instance at once."""

    def __init__(self, max_instances: int, max_bytes: int) -> None:
        self.max_instances = max_instances
        self.max_bytes = max_bytes
        self._instances: collections.OrderedDict[str, tuple[WorkflowInstance, int]] = (
            collections.OrderedDict()
        )
        self.bytes = 0
        self.evictions = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._instances)

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._instances

    def take(self, run_id: str) -> WorkflowInstance | None:
        entry = self._instances.pop(run_id, None)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self.bytes -= entry[1]
        return entry[0]

    def peek(self, run_id: str) -> WorkflowInstance | None:
        entry = self._instances.get(run_id)
        return entry[0] if entry is not None else None

    def put(self, run_id: str, instance: WorkflowInstance) -> None:
        """Keeps ``instance`` as the most recently used; evicts the least recently used ones
        while either bound is exceeded (an instance over the byte bound alone is not kept)."""
        if self.max_instances <= 0:
            return
        previous = self._instances.pop(run_id, None)
        if previous is not None:
            self.bytes -= previous[1]
            if previous[0] is not instance:
                previous[0].dispose()
        size = retained_bytes(instance)
        self._instances[run_id] = (instance, size)
        self.bytes += size
        while len(self._instances) > self.max_instances or (
            self.bytes > self.max_bytes and self._instances
        ):
            _, (evicted, evicted_size) = self._instances.popitem(last=False)
            self.bytes -= evicted_size
            self.evictions += 1
            evicted.dispose()

    def clear(self) -> None:
        """Disposes of every instance (its worker stopped): their coroutines are closed now,
        not left in reference cycles for the collector."""
        instances, self._instances = self._instances, collections.OrderedDict()
        self.bytes = 0
        for instance, _ in instances.values():
            instance.dispose()
