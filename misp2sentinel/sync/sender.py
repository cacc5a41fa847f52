"""Uploading each workspace's batches from a background thread.

The main thread maps events and plans batches while every workspace's batches go out on that
workspace's own thread, in the order they were planned. Workspaces with different identities
thus upload at the same time. Workspaces that share an identity share its rate limiter, which
keeps them together under one allowance.

Only the main thread touches the state: it records each finished upload itself, in the order
the batches were submitted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

# Batches per workspace that are queued or in flight at once: one is uploaded while the next
# waits, and memory stays at two batches however fast events are mapped.
MAX_PENDING_BATCHES = 2

Payload = TypeVar("Payload")


class SenderGroup:
    """The background senders of one run.

    While the main thread waits for one sender, it records the finished uploads of every sender
    in the group, so the other workspaces' threads keep uploading meanwhile. The main thread
    still plans the next event only once the slow workspace has room, so over a run every
    workspace advances at the pace of the slowest; a workspace that fails is dropped instead.
    """

    def __init__(self) -> None:
        self.senders: list[BatchSender] = []

    def collect(self) -> None:
        """Record every sender's finished uploads, without waiting."""
        for sender in self.senders:
            sender.collect()

    def wait_until(self, condition: Callable[[], bool]) -> None:
        """Record finished uploads as they come until `condition()` is true."""
        while True:
            self.collect()
            if condition():
                return
            # A sender starts a batch only after the one before it was recorded, so only the
            # oldest batch of each sender can finish next. Without a timeout a signal still runs
            # its handler during the wait.
            oldest = [sender.oldest() for sender in self.senders if sender.pending]
            wait(oldest, return_when=FIRST_COMPLETED)


class BatchSender(Generic[Payload]):
    """A background thread that uploads one workspace's batches one after another.

    `submit` queues a batch with a payload. Each finished upload is passed with its payload to
    `record`, on the main thread and oldest first, when the main thread calls `collect`, waits for
    room or drains the sender. The thread starts a batch only after `record` has returned for the
    previous one. So at most one batch at a time can be stored by Sentinel and not yet recorded in
    the state, and that is the batch a crash would send again. No batch starts once `stop` is set,
    the sender is closed, or an upload raised. A batch that has not started then ends as
    cancelled, so its outcome is never recorded and the next run plans it again.

    The future passed to `record` is cancelled (the batch never started), contains the upload's
    exception, or contains one result per object. When `record` raises, no further batch starts.

    Every method is for the main thread; only `_work` runs on the sender's thread.
    """

    def __init__(self, name: str, upload: Callable[[list[dict]], list], record: Callable[[Payload, Future], None], *,
                 stop: threading.Event | None = None, group: SenderGroup | None = None,
                 max_pending: int = MAX_PENDING_BATCHES) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.name = name
        self.max_pending = max_pending
        self._upload = upload
        self._record = record
        self._stop = stop
        self._group = group or SenderGroup()
        self._group.senders.append(self)
        self._jobs: queue.SimpleQueue[tuple[Future, list[dict]] | None] = queue.SimpleQueue()
        self._pending: deque[tuple[Payload, Future]] = deque()
        # Taken by the thread before an upload and given back once the main thread has recorded it.
        self._may_start = threading.Semaphore(1)
        self._halted = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """The number of submitted batches not yet passed to `record`."""
        return len(self._pending)

    def submit(self, objects: list[dict], payload: Payload) -> None:
        """Queue `objects` for upload, after waiting for room when `max_pending` batches are pending."""
        if self._closed.is_set():
            raise RuntimeError(f"bug: batch submitted to the closed sender of workspace {self.name}")
        self._group.wait_until(lambda: len(self._pending) < self.max_pending)
        if self._thread is None:
            # Daemon, so that a second signal, which interrupts the main thread, ends the process
            # without waiting for the request in flight.
            self._thread = threading.Thread(target=self._work, name=f"upload-{self.name}", daemon=True)
            self._thread.start()
        future: Future = Future()
        self._pending.append((payload, future))
        self._jobs.put((future, objects))

    def collect(self) -> None:
        """Pass the finished uploads at the front of the queue to `record`, without waiting."""
        while self._pending and self._pending[0][1].done():
            payload, future = self._pending.popleft()
            self._record(payload, future)
            if not future.cancelled():
                self._may_start.release()

    def drain(self) -> None:
        """Wait until every submitted batch has finished and been passed to `record`."""
        self._group.wait_until(lambda: not self._pending)

    def oldest(self) -> Future:
        return self._pending[0][1]

    def cancel_queued(self) -> int:
        """Cancel the batches that have not started; return how many were cancelled."""
        return sum(1 for _, future in self._pending if future.cancel())

    def close(self) -> None:
        """Cancel the batches that have not started and let the thread end.

        A batch in flight still finishes, but is recorded only if `collect` or `drain` runs again.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self.cancel_queued()
        if self._thread is not None:
            self._jobs.put(None)
            # Wakes the thread if it waits for a batch that will not be recorded.
            self._may_start.release()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, objects = job
            self._may_start.acquire()
            if self._halted.is_set() or self._closed.is_set() or (self._stop is not None and self._stop.is_set()):
                future.cancel()
            if not future.set_running_or_notify_cancel():
                self._may_start.release()
                continue
            try:
                results = self._upload(objects)
            except BaseException as error:
                # Every later batch is cancelled: after a WorkspaceError the workspace takes no
                # uploads in this run, and any other error ends the run when the main thread records it.
                self._halted.set()
                future.set_exception(error)
            else:
                future.set_result(results)
