"""Downloading a succeeded task's outputs into the output folder, for the executor.

Each output is streamed to ``<output>/.rhflow/partial/``, checked (length, and the header of PNG
and JPEG files), then renamed into place under the name the step's ``outputs`` template gives,
which can never lead outside the output folder. A failed download is retried as a download with
backoff; the paid task is never run again for it. The store records the links as soon as the
task succeeds and each file as soon as it is in place, so the next run downloads only what
is missing or changed.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rhflow.api.client import DownloadResult, Output
from rhflow.api.results import file_ext
from rhflow.errors import ApiError, OutputWriteError, PlanError, RhflowError
from rhflow.execute.failures import TaskFailure
from rhflow.execute.remote import Remote
from rhflow.execute.transfers import (
    check_file,
    file_sha256,
    intact,
    place,
    safe_destination,
    safe_part,
)
from rhflow.model import PlannedTask
from rhflow.record.manifest import write_atomic
from rhflow.record.store import OutputRecord, TaskRecord

STAGING = ".rhflow/partial"


class Downloads:
    """Puts the outputs of the run's tasks on disk, through ``remote``'s pool and store."""

    def __init__(self, remote: Remote, output_dir: Path) -> None:
        self._remote = remote
        self._output_dir = output_dir
        self._root: Path | None = None  # output_dir resolved
        self._claimed: dict[Path, str] = {}

    async def collect(
        self, task: PlannedTask, outputs: Sequence[Output], *, retries: int | None = None
    ) -> None:
        """Record the output links, then download each file into place."""
        remote = self._remote
        if not outputs:
            raise TaskFailure(
                {
                    "kind": "failed",
                    "message": "the task succeeded without any output file; "
                    "check that the workflow has an output node (SaveImage...)",
                },
                retry=False,
            )
        cap = remote.options.max_outputs
        if len(outputs) > cap:
            raise TaskFailure(
                {
                    "kind": "failed",
                    "message": f"the task reported {len(outputs)} outputs, more than the "
                    f"{cap} allowed per task; nothing was downloaded (raise --max-outputs "
                    "if the workflow really makes that many)",
                },
                retry=False,
                keep="downloading",
            )
        kept = self._kept(task)
        cost = next((o.task_cost_time for o in outputs if o.task_cost_time is not None), None)
        charged = remote.keys.charged(outputs, remote.record(task))
        links = [
            OutputRecord(i, o.node_id, o.file_url or None, o.file_type)
            for i, o in enumerate(outputs)
        ]
        remote.save(
            task,
            status="downloading",
            outputs=tuple(links),
            cost_time=cost,
            failure=None,
            **charged,
        )
        done: list[OutputRecord] = []
        downloading = time.monotonic()
        for index, output in enumerate(outputs):
            if index in kept:
                done.append(replace(kept[index], url=links[index].url))
            else:
                done.append(await self._download(task, index, output, retries))
            if len(done) < len(links):
                remote.save(task, outputs=(*done, *links[len(done) :]))
        record = remote.save(
            task, status="succeeded", outputs=tuple(done), finished_at=time.time(), failure=None
        )
        remote.emit(
            "task_succeeded",
            task,
            task_id=record.remote_id,
            outputs=len(done),
            download_seconds=round(time.monotonic() - downloading, 4),
        )

    def _kept(self, task: PlannedTask) -> dict[int, OutputRecord]:
        """The outputs an earlier run already put on disk, still intact, by index."""
        record = self._remote.record(task)
        kept = {}
        for output in record.outputs if record else ():
            if output.path and intact(Path(output.path), output.sha256):
                kept[output.index] = output
                self._claimed.setdefault(Path(output.path), task.id)
        return kept

    async def _download(
        self, task: PlannedTask, index: int, output: Output, retries: int | None
    ) -> OutputRecord:
        remote = self._remote
        options = remote.options
        tries = options.download_retries if retries is None else retries
        ext = file_ext(output.file_type) or "bin"  # never a path: see file_ext
        dest = self._destination(task, index, ext, output.node_id)
        staged = self._output_dir / STAGING / f"{task.id}-{index}.{ext}"
        for attempt in range(tries + 1):
            try:
                sha, size = await self._fetch(output, staged, ext, dest)
                break
            except ApiError as err:
                last = min(tries, getattr(err, "retries_at_most", tries))
                if attempt >= last or not err.retryable:
                    raise _failure(
                        f"downloading output {index} failed: {err}; "
                        "run again to retry the download (the task is not run again)"
                    ) from err
                delay = options.api_backoff.delay(attempt, remote.rand)
                remote.emit("download_retry", task, reason=str(err), delay=delay)
                await asyncio.sleep(delay)
            except (OSError, RhflowError) as err:  # a local fault: the files are still there
                raise _write_failure(self._output_dir, index, dest, err) from err
        remote.emit("download", task, path=str(dest), bytes=size, sha256=sha, index=index)
        return OutputRecord(
            index, output.node_id, output.file_url or None, output.file_type, str(dest), sha, size
        )

    async def _fetch(self, output: Output, staged: Path, ext: str, dest: Path) -> tuple[str, int]:
        """The file (or a text output) into ``staged``, checked, then renamed to ``dest``:
        the file comes over the run's session (``Remote.calls``), the checks and the rename
        run in the pool."""
        remote = self._remote
        if not output.file_url:
            return await remote.call(self._keep_text, output, staged, dest)
        calls = await remote.calls(remote.client)
        place_it = functools.partial(self._check_and_place, staged, ext, dest)
        found: tuple[str, int] = await calls.download(output.file_url, staged, then=place_it)
        return found

    @staticmethod
    def _keep_text(output: Output, staged: Path, dest: Path) -> tuple[str, int]:
        write_atomic(staged, (output.text or "").encode("utf-8"))
        digest, size = file_sha256(staged), staged.stat().st_size
        place(staged, dest)
        return digest, size

    @staticmethod
    def _check_and_place(
        staged: Path, ext: str, dest: Path, result: DownloadResult
    ) -> tuple[str, int]:
        try:
            check_file(staged, ext, result.bytes)
        except ApiError:
            staged.unlink(missing_ok=True)
            raise
        place(staged, dest)
        return str(result.sha256), int(result.bytes)

    def _destination(self, task: PlannedTask, index: int, ext: str, node_id: str | None) -> Path:
        from rhflow.planning.planner import output_name

        try:
            name = output_name(
                task,
                index=index,
                ext=ext,
                node_id=safe_part(node_id or ""),
                task_short=task.id[:8],
            )
            if self._root is None:  # the folder's own path resolved once, not per file
                self._root = self._output_dir.resolve()
            dest = safe_destination(self._root, name, resolved=True)
        except PlanError as err:
            raise _failure(str(err)) from err
        owner = self._claimed.setdefault(dest, task.id)
        if owner != task.id:
            dest = dest.with_name(f"{dest.stem}-{task.id[:8]}{dest.suffix}")
            self._claimed[dest] = task.id
            self._remote.note(
                task,
                f"output name {name!r} is used by task {owner[:10]} too; "
                f"writing {dest.name} instead (make the outputs template unique)",
            )
        return dest

    def destination(self, task: PlannedTask, index: int, ext: str, node_id: str | None) -> Path:
        """Where output ``index`` of ``task`` goes (its name reserved for it); TaskFailure
        when the outputs template gives no valid name."""
        return self._destination(task, index, ext, node_id)

    def claim(self, record: TaskRecord) -> None:
        """Reserve the file names of a task done in an earlier run."""
        for output in record.outputs:
            if output.path:
                self._claimed.setdefault(Path(output.path), record.id)


#: Write errors that every other download into the folder would meet too.
_FOLDER_ERRORS = frozenset(
    {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}
)


def _write_failure(output_dir: Path, index: int, dest: Path, err: Exception) -> TaskFailure:
    """A file that could not be put in place. A full disk, a file-size limit or a read-only
    folder is no network fault and stops the run's creates (fatal): the task stays
    "downloading", so the next run fetches its files without creating it again."""
    code = err.errno if isinstance(err, (OSError, OutputWriteError)) else None
    if code in _FOLDER_ERRORS:
        cause = err.cause if isinstance(err, OutputWriteError) else os.strerror(code or 0)
        detail = {
            "kind": "download",
            "message": f"cannot write into {output_dir}: {cause}; no more tasks are created "
            "(every download would fail too). Free space or fix the folder, then run again: "
            "the missing files are downloaded, no task is created again",
        }
        return TaskFailure(detail, retry=False, fatal=True, keep="downloading")
    return _failure(
        f"writing output {index} to {dest} failed: {err}; "
        "fix that and run again to download it (the task is not run again)"
    )


def _failure(message: str) -> TaskFailure:
    """A download that failed: the task stays "downloading", so a later run fetches it again."""
    return TaskFailure({"kind": "download", "message": message}, retry=False, keep="downloading")
