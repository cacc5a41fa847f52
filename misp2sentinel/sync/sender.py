"""Uploading each workspace's batches from background threads.

The main thread maps events and plans batches while every workspace's batches go out on threads
of that workspace, started in the order they were planned. Workspaces with different identities
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
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

# Batches per workspace that are queued or in flight at once, at least: one is uploaded while the
# next waits. A sender with several threads keeps one more than it has threads. Memory thus stays
# at a few batches however fast events are mapped.
MAX_PENDING_BATCHES = 2

Payload = TypeVar("Payload")


class SenderGroup:
    """The background senders of one run.

    While the main thread waits for one sender, it records the finished uploads of every sender
    in the group, so the other workspaces' threads keep uploading meanwhile. The main thread
    still plans the next event only once the slow workspace has room. Over a run every workspace
    thus advances at the pace of the slowest, unless that one fails and is dropped.
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
            # Batches are recorded oldest first, so the oldest batch of each sender is the one
            # whose end lets recording go on. Without a timeout a signal still runs its handler
            # during the wait.
            oldest = [sender.oldest() for sender in self.senders if sender.pending]
            wait(oldest, return_when=FIRST_COMPLETED)


class BatchSender(Generic[Payload]):
    """Background threads that upload one workspace's batches, one thread per upload function.

    `submit` queues a batch with a payload. The threads take batches in the order they were
    submitted, so with several upload functions as many requests are in flight at once. That hides
    the response time when the rate limit allows more requests than one connection can send one
    after another. Each finished upload is passed with its payload to `record`, on the main
    thread and oldest first, when the main thread calls `collect`, waits for room or drains the
    sender. A thread starts a batch only while fewer batches than there are threads are uploaded
    and not yet recorded. So at most that many batches can be stored by Sentinel and not yet
    recorded in the state, and those are the batches a crash would send again, under the same
    ids. No batch starts once `stop` is set, the sender is closed, or an upload raised. A batch
    that has not started then ends as cancelled, so its outcome is never recorded and the next
    run plans it again.

    The future passed to `record` is cancelled (the batch never started), contains the upload's
    exception, or contains one result per object. When `record` raises, no further batch starts.

    Every method is for the main thread; only `_work` runs on the sender's threads.
    """

    def __init__(self, name: str, upload: Callable[[list[dict]], list] | Sequence[Callable[[list[dict]], list]],
                 record: Callable[[Payload, Future], None], *, stop: threading.Event | None = None,
                 group: SenderGroup | None = None, max_pending: int | None = None) -> None:
        self._uploads = list(upload) if isinstance(upload, Sequence) else [upload]
        if not self._uploads:
            raise ValueError("a sender needs at least one upload function")
        if max_pending is None:
            # One batch waits besides those in flight, so a thread that finishes usually finds the next one queued.
            max_pending = max(MAX_PENDING_BATCHES, len(self._uploads) + 1)
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.name = name
        self.max_pending = max_pending
        self._record = record
        self._stop = stop
        self._group = group or SenderGroup()
        self._group.senders.append(self)
        self._jobs: queue.SimpleQueue[tuple[Future, list[dict]] | None] = queue.SimpleQueue()
        self._pending: deque[tuple[Payload, Future]] = deque()
        # Taken by a thread before an upload and given back once the main thread has recorded it.
        self._may_start = threading.Semaphore(len(self._uploads))
        self._halted = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def pending(self) -> int:
        """The number of submitted batches not yet passed to `record`."""
        return len(self._pending)

    def submit(self, objects: list[dict], payload: Payload) -> None:
        """Queue `objects` for upload, after waiting for room when `max_pending` batches are pending."""
        if self._closed.is_set():
            raise RuntimeError(f"bug: batch submitted to the closed sender of workspace {self.name}")
        self._group.wait_until(lambda: len(self._pending) < self.max_pending)
        if not self._threads:
            # Daemons, so that a second signal, which interrupts the main thread, ends the process
            # without waiting for the requests in flight.
            for number, upload in enumerate(self._uploads, start=1):
                thread = threading.Thread(target=self._work, args=(upload,), name=f"upload-{self.name}-{number}", daemon=True)
                self._threads.append(thread)
                thread.start()
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
        for _ in self._threads:
            self._jobs.put(None)
            # Wakes a thread that waits for a permit which a batch that will not be recorded holds.
            self._may_start.release()

    def _work(self, upload: Callable[[list[dict]], list]) -> None:
        while True:
            # The permit comes before the batch, so batches start in the order they were submitted.
            # Otherwise a later batch could take the last permit and keep the oldest from starting,
            # and the main thread, which records oldest first, would wait for it forever.
            self._may_start.acquire()
            job = self._jobs.get()
            if job is None:
                self._may_start.release()
                return
            future, objects = job
            if self._halted.is_set() or self._closed.is_set() or (self._stop is not None and self._stop.is_set()):
                future.cancel()
            if not future.set_running_or_notify_cancel():
                self._may_start.release()
                continue
            try:
                results = upload(objects)
            except BaseException as error:
                # Every later batch is cancelled: after a WorkspaceError the workspace takes no
                # uploads in this run, and any other error ends the run when the main thread records it.
                self._halted.set()
                future.set_exception(error)
            else:
                future.set_result(results)
