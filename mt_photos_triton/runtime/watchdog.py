"""Keeps the embedded server up: a dead server is restarted with a doubling back-off."""

from __future__ import annotations

import logging
import threading

from mt_photos_triton.runtime.embedded import EmbeddedTriton, EmbeddedTritonError

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0


class Watchdog:
    """Restarts the embedded server when it dies, with a doubling back-off, and says so in the log."""

    def __init__(self, server: EmbeddedTriton, first_delay_s: float = 1.0, max_delay_s: float = 60.0) -> None:
        self.server = server
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = self.first_delay_s
        while not self._stop.wait(CHECK_INTERVAL_S):
            if self.server.alive():
                continue
            log.error("the embedded Triton server died (%s); restarting in %.1f s", self.server.exit_code, delay)
            if self._stop.wait(delay):
                return
            self.server.stop()
            try:
                self.server.start()
            except EmbeddedTritonError as error:
                log.error("restart failed: %s", error)
                delay = min(delay * 2, self.max_delay_s)
                continue
            # Log before counting: whoever waits on the count then finds the message already written.
            log.warning("the embedded Triton server is back (restart %d)", self.restarts + 1)
            self.restarts += 1
            delay = self.first_delay_s
