"""Garbage collection paced by events instead of by allocations.

CPython's cyclic collector runs every few hundred allocations, and its older generations walk
every live container. While one large event is mapped, hundreds of thousands of dicts are alive,
and those walks took about 40% of an export's CPU time. The bridge creates almost no reference
cycles (its data is plain dicts and lists, freed by reference counting), so the command line
pauses automatic collection and the pipeline runs a full collection between events, once enough
net allocations have built up to be worth one.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Net allocations of tracked objects (allocations minus frees) that make a collection due. Between
# events little is alive, so a full collection then costs a few milliseconds.
ALLOCATIONS_BETWEEN_COLLECTIONS = 200_000


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
    """Run a full collection when automatic collection is paused and enough allocations built up."""
    if not gc.isenabled() and gc.get_count()[0] >= ALLOCATIONS_BETWEEN_COLLECTIONS:
        gc.collect()
