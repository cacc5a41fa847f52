"""Garbage collection paced by events instead of by allocations.

CPython's cyclic collector runs every few hundred allocations, and its older generations walk
every live container. While one large event is mapped, hundreds of thousands of dicts are alive,
and those walks took about 40% of an export's CPU time. The bridge creates almost no reference
cycles: its data is plain dicts and lists, freed by reference counting. So the command line pauses
automatic collection, and the pipeline runs a full collection between events once enough net
allocations have built up to be worth one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Net allocations of tracked objects (allocations minus frees) that make a collection due. A
# normalised 100,000-attribute event contains about 600,000 tracked objects, so mapping one such
# event triggers no collection at all.
ALLOCATIONS_BETWEEN_COLLECTIONS = 1_000_000
# The most CPU time collections may take: after a collection that took d seconds, the next waits
# until the process has spent d / COLLECTION_SHARE seconds more, however many allocations pile up.
COLLECTION_SHARE = 0.02

_next_allowed = 0.0


@contextmanager
def paced_collection() -> Iterator[None]:
    """Pause automatic garbage collection for the block; `collect_if_due` collects instead."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_if_due() -> None:
    """Run a full collection when automatic collection is paused, enough allocations built up and
    collections have not yet used their share of the CPU time.

    CPU time of the process is a resource measure here, not the run's clock, so it is read
    directly rather than through the injected clock.
    """
    global _next_allowed
    if gc.isenabled() or gc.get_count()[0] < ALLOCATIONS_BETWEEN_COLLECTIONS:
        return
    started = time.process_time()
    if started < _next_allowed:
        return
    gc.collect()
    _next_allowed = started + (time.process_time() - started) / COLLECTION_SHARE


def resume_automatic_collection() -> None:
    """Turn automatic collection back on for the rest of the run.

    For work that makes reference cycles on every record, such as parsing each pattern with the
    STIX pattern grammar (`--validate`), whose parse trees point back at each other. Collecting
    only between events would then let memory grow with the largest event.
    """
    gc.enable()
