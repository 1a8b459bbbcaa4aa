"""`mt-photos-triton serve`: the adapter on HTTP_HOST:HTTP_PORT, with an embedded Triton or an existing one."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from adapter.app import create_app
from adapter.settings import Settings
from mt_photos_triton.runtime.embedded import EmbeddedTriton, EmbeddedTritonError
from mt_photos_triton.runtime.watchdog import Watchdog
from mt_photos_triton.families import FAMILIES, SERVED_MODEL_PARAMETER, ModelChoiceError, chosen_model
from mt_photos_triton.repository import CONFIG_NAME, parameter, read_config, scan

log = logging.getLogger(__name__)


# files the committed tree holds in version folders: anything else there was written by export
COMMITTED_FILES = frozenset({"model.py", ".gitkeep"})


def report_repository(repository: Path) -> tuple[list[str], dict[str, str]]:
    """Log which families can be served and what to run for the others. Returns the loadable model names, and
    for each family exported in part (some of its files written, another missing) its entry models' reasons,
    paths relative to the repository, for readiness to report."""
    statuses = scan(repository)
    missing: dict[str, str] = {}
    for family in FAMILIES.values():
        reasons = {m: statuses[m].missing for m in family.entry_models if m in statuses and statuses[m].missing}
        absent = [m for m in family.entry_models if m not in statuses]
        if absent:
            log.warning("%s: models %s are not in %s", family.name, absent, repository)
        elif reasons:
            log.warning("%s: not available (%s); run `%s`", family.name, next(iter(reasons.values())),
                        family.export_command)
            if _exported(repository, [name for name, s in statuses.items() if s.family == family.name]):
                missing.update({m: str(r).replace(f"{repository}/", "") for m, r in reasons.items()})
        else:
            log.info("%s: ready to load", family.name)
    return [name for name, status in statuses.items() if status.loadable], missing


def _exported(repository: Path, models: list[str]) -> bool:
    """Whether export wrote anything for these models (weights, tokenizer, sidecars)."""
    return any(
        path.is_file() and path.name not in COMMITTED_FILES
        for model in models
        for path in (repository / model / "1").glob("*")
    )


def report_served_models(repository: Path, env: Mapping[str, str]) -> None:
    """Warn, per family, where the repository serves another model than the variables name (the user changed
    CLIP_VISUAL_MODEL_NAME, say, and has not exported again): what is served is what the repository holds."""
    for family in FAMILIES.values():
        try:
            wanted = chosen_model(family, env)
        except ModelChoiceError as error:
            log.warning("%s: %s", family.name, error)
            continue
        configs = [Path(repository) / entry for entry in family.entry_models]
        served = {parameter(read_config(d), SERVED_MODEL_PARAMETER) for d in configs if (d / CONFIG_NAME).is_file()}
        if served and served != {wanted}:
            named = ", ".join(sorted(m or "a model it does not name" for m in served))
            log.warning(
                "%s: the repository serves %s, but %s names %s; run `%s` to serve that",
                family.name, named, " / ".join(family.variables), wanted, family.export_command,
            )


def serve(repository: Path, host: str | None, port: int | None, triton_url: str | None) -> int:
    import uvicorn

    settings = Settings.from_env(http_host=host, http_port=port, triton_url=triton_url)
    embedded: EmbeddedTriton | None = None
    watchdog: Watchdog | None = None
    missing: dict[str, str] = {}  # with a Triton of its own, readiness is that server's model readiness
    exports: dict[str, dict[str, str]] = {}  # and the console has no export records to show
    try:
        if triton_url is None:
            from export.record import exports as export_records

            models, missing = report_repository(repository)
            exports = export_records(repository)
            report_served_models(repository, os.environ)
            embedded = EmbeddedTriton(
                repository=repository,
                models=models,
                accelerator=os.environ.get("ACCELERATOR", "cpu"),
                precision=os.environ.get("TRT_PRECISION", "auto"),
            )
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
        app = create_app(settings, missing=missing, exports=exports)
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
