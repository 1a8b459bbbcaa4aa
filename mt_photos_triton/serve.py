"""`mt-photos-triton serve`: the adapter on HTTP_HOST:HTTP_PORT, with an embedded Triton or an existing one."""

from __future__ import annotations

import logging
from pathlib import Path

from adapter.app import create_app
from adapter.settings import Settings
from mt_photos_triton.runtime.embedded import EmbeddedTriton, EmbeddedTritonError
from mt_photos_triton.runtime.watchdog import Watchdog
from mt_photos_triton.families import FAMILIES
from mt_photos_triton.repository import scan

log = logging.getLogger(__name__)


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
