"""``--cache``: take a finished task from the shared cache instead of paying for it, and put
each task this run finishes there. For the executor, on its event loop (the cache's blocking
calls go to its thread pool).

A task is taken only from entries made on this run's server (by origin). An entry that cannot
be read, or whose files do not match their sha256, is ignored with a note on the task, which
then runs as usual; a cache that cannot be written costs a note, never the task.
"""

from __future__ import annotations

import time
from pathlib import Path

from rhflow.api.client import origin_of
from rhflow.api.results import file_ext
from rhflow.errors import CacheError
from rhflow.execute.downloads import STAGING, Downloads
from rhflow.execute.failures import TaskFailure
from rhflow.execute.remote import Remote
from rhflow.execute.transfers import place
from rhflow.model import PlannedTask
from rhflow.record.cache import CachedOutput, CacheEntry, TaskCache
from rhflow.record.costs import spend_text
from rhflow.record.store import OutputRecord, TaskRecord

TAKEN_NOTE = (
    "taken from the cache {url} (run as task {remote_id} on {server}, {cost} there); "
    "nothing was submitted"
)


class CacheUse:
    """The cache as one run uses it."""

    def __init__(
        self, cache: TaskCache, remote: Remote, downloads: Downloads, output_dir: Path, server: str
    ) -> None:
        self._cache = cache
        self._remote = remote
        self._downloads = downloads
        self._output_dir = output_dir
        self._server = origin_of(server)

    async def take(self, task: PlannedTask) -> bool:
        """Put the task's cached outputs in place and record it as succeeded; False (with a
        note when an entry was there but unusable) when the task must run."""
        remote = self._remote
        try:
            entry = await remote.call(self._cache.get, task.id, self._server)
            if entry is None:
                return False
            outputs = [await self._place(task, entry, output) for output in entry.outputs]
        except (CacheError, OSError, TaskFailure) as err:
            remote.note(task, f"cache entry ignored: {err}")
            return False
        note = TAKEN_NOTE.format(
            url=self._cache.url,
            remote_id=entry.remote_id,
            server=entry.server,
            cost=_cost(entry),
        )
        record = remote.record(task)
        notes = record.notes if record else ()
        remote.save(
            task,
            status="succeeded",
            remote_id=entry.remote_id,
            server=self._server,
            emulated=entry.emulated,
            node_info_list=entry.node_info_list,
            cost_time=entry.cost_time,
            coins=None,
            finished_at=time.time(),
            failure=None,
            outputs=tuple(outputs),
            notes=(*notes, note),
        )
        remote.emit("note", task, message=note)
        remote.emit("task_succeeded", task, task_id=entry.remote_id, outputs=len(outputs))
        return True

    async def _place(
        self, task: PlannedTask, entry: CacheEntry, output: CachedOutput
    ) -> OutputRecord:
        ext = file_ext(output.file_type or "") or "bin"  # an untrusted entry: never a path
        dest = self._downloads.destination(task, output.index, ext, output.node_id)
        staged = self._output_dir / STAGING / f"{task.id}-{output.index}.cached"
        await self._remote.call(self._cache.fetch, entry, output, staged)
        await self._remote.call(place, staged, dest)
        self._remote.emit(
            "download",
            task,
            path=str(dest),
            bytes=output.bytes,
            sha256=output.sha256,
            index=output.index,
        )
        return OutputRecord(
            output.index,
            output.node_id,
            output.url,
            output.file_type,
            str(dest),
            output.sha256,
            output.bytes,
        )

    async def put(self, task: PlannedTask) -> None:
        """Store the task this run just finished (a note when the cache cannot take it)."""
        record = self._remote.record(task)
        if record is None or record.status != "succeeded" or not record.outputs:
            return
        entry = _entry(record, self._server)
        if entry is None:
            return
        files = {o.index: Path(o.path) for o in record.outputs if o.path}
        try:
            await self._remote.call(self._cache.put, entry, files)
        except (CacheError, OSError) as err:
            self._remote.note(task, f"not stored in the cache: {err}")


def _entry(record: TaskRecord, server: str) -> CacheEntry | None:
    if any(o.path is None or o.sha256 is None or o.bytes is None for o in record.outputs):
        return None
    return CacheEntry(
        task=record.id,
        step=record.step,
        server=server,
        emulated=record.emulated,
        remote_id=record.remote_id,
        params=record.params,
        node_info_list=record.node_info_list,
        cost_time=record.cost_time,
        coins=record.coins,
        money=record.money,
        currency=record.currency,
        finished_at=record.finished_at,
        outputs=tuple(
            CachedOutput(o.index, o.node_id, o.url, o.file_type, o.sha256 or "", o.bytes or 0)
            for o in record.outputs
        ),
    )


def _cost(entry: CacheEntry) -> str:
    """``3 coins``, ``0 coins / 0.01 CNY``, or ``? coins`` when the entry does not say."""
    if entry.coins is None and entry.money is None:
        return "? coins"
    money = {entry.currency or "": entry.money} if entry.money is not None else None
    return spend_text(entry.coins or 0.0, money)
