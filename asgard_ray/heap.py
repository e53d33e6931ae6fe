"""Keep the garbage collector's full passes off the request path of long-lived actors.

A replica or actor imports MLflow, pandas, pyarrow and FastAPI: hundreds of thousands of objects that
live as long as the process. CPython's full (generation 2) collection walks all of them, 100-130 ms in
the monitoring actor on this machine, and while records and requests allocate right after start-up it
ran several times a second (``gc.callbacks`` in the API replica and the monitoring actor put a full pass
under each slow monitoring POST of a fresh stack). ``gc.freeze()`` after start-up moves what exists then
out of the collector's view: later full passes walk only what came after (15-30 ms there).
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_startup_heap"]

log = logging.getLogger(__name__)


def freeze_startup_heap(what: str) -> int:
    """Collect once, then freeze every object alive now (call when start-up imports are done).

    Safe to call again later (what was allocated in between is frozen too). Returns the frozen count.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d start-up objects frozen out of the garbage collector's full passes", what, frozen)
    return frozen
