"""One sync run: pull what changed, map it, compare with the state, push, record.

`run.py` drives a run, `plan.py` decides which events to fetch (the cursor window, the sweep of the
whole selection, pending events and refreshes), and `workspace.py` plans, sends and records what
one workspace receives.
"""

from misp2sentinel.sync.plan import selection_key
from misp2sentinel.sync.run import run_sync

__all__ = ["run_sync", "selection_key"]
