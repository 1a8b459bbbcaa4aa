"""`mt-photos-triton serve`: the adapter on HTTP_HOST:HTTP_PORT, with an embedded Triton or an existing one."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from adapter.app import create_app
from adapter.settings import Settings
from mt_photos_triton.embedded import EmbeddedTriton, EmbeddedTritonError
from mt_photos_triton.families import FAMILIES
from mt_photos_triton.repository import scan

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0


def report_repository(repository: Path) -> list[str]:
    """Log which families can be served and what to run for the others; the loadable model names."""
    statuses = scan(repository)
    for family in FAMILIES.values():
        missing = [statuses[m].missing for m in family.entry_models if m in statuses and statuses[m].missing]
        absent = [m for m in family.entry_models if m not in statuses]
        if absent:
            log.warning("%s: models %s are not in %s", family.name, absent, repository)
        elif missing:
            log.warning("%s: not available (%s); run `%s`", family.name, missing[0], family.export_command)
        else:
            log.info("%s: ready to load", family.name)
    return [name for name, status in statuses.items() if status.loadable]


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
            log.error("the embedded Triton server died (%s); restarting in %.0f s", self.server.exit_code, delay)
            if self._stop.wait(delay):
                return
            self.server.stop()
            try:
                self.server.start()
            except EmbeddedTritonError as error:
                log.error("restart failed: %s", error)
                delay = min(delay * 2, self.max_delay_s)
                continue
            self.restarts += 1
            log.warning("the embedded Triton server is back (restart %d)", self.restarts)
            delay = self.first_delay_s


def serve(repository: Path, host: str | None, port: int | None, triton_url: str | None) -> int:
    import uvicorn

    settings = Settings.from_env(http_host=host, http_port=port, triton_url=triton_url)
    embedded: EmbeddedTriton | None = None
    watchdog: Watchdog | None = None
    try:
        if triton_url is None:
            models = report_repository(repository)
            embedded = EmbeddedTriton(repository=repository, models=models)
            try:
                embedded.start()
            except EmbeddedTritonError as error:
                log.error("%s", error)
                return 1
            settings = Settings.from_env(http_host=host, http_port=port, triton_url=embedded.http_url)
            log.info("embedded Triton ready at %s (metrics %s)", embedded.http_url, embedded.metrics_url)
            watchdog = Watchdog(embedded)
            watchdog.start()
        else:
            log.info("using the Triton server at %s", triton_url)
        app = create_app(settings)
        # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes, returns; then we stop Triton
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        if watchdog is not None:
            watchdog.stop()
        if embedded is not None:
            log.info("stopping the embedded Triton server")
            embedded.stop()
    return 0
