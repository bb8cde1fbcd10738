"""The garbage collector, off while route caches rebuild.

A rebuild allocates a million long-lived Routes, so the collector runs often, walks ever more
of them and finds nothing: 1-2 s of a million-route rebuild. The pause is process-wide, shared
by every cache in the process, so it lives apart from any one of them.
"""

from __future__ import annotations

import gc
import threading


class _ProcessPause:
    """The collector's state across holders: it comes back on when the last holder releases
    it, and only if it was on when the first one took it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def hold(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                if gc.get_freeze_count() == 0:
                    # Moves everything allocated meanwhile to the oldest generation without a
                    # collection; re-enabled as is, the next young collections would walk all
                    # of it twice over. Skipped if the application froze objects itself:
                    # unfreeze() would undo that.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


_process_pause = _ProcessPause()


class GcPause:
    """One cache's share of the pause. Released at most once per hold: a cache gives the
    collector back early while it waits for the registry, and again when its rebuild ends."""

    def __init__(self) -> None:
        self._holding = False
        self._lock = threading.Lock()  # released from the cache thread and lookups' threads

    def hold(self) -> None:
        with self._lock:
            if not self._holding:
                _process_pause.hold()
                self._holding = True

    def release(self) -> None:
        with self._lock:
            if self._holding:
                self._holding = False
                _process_pause.release()
