"""What was exported: one record format for every family, and one up-to-date check.

The record (`export.json` in the family's first entry model's folder) names the model, what was asked for
(`--from`), where the files came from, the sha256 of the source files and of every file in the family's model
folders as export left them, and a fingerprint of the code that wrote them. An export is up to date when the
same model was asked for the same way, by the same code, and every file is still as written: then a re-run
without --force does nothing. The fingerprint covers the exporter's modules and the family's committed python
models, so an upgrade that changes either (other configs, other graph rewrites, a `model.py` reading other
parameters) is exported again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from export.common import ExportResult
from export.install import family_models, install_python_models, python_model_sources
from export.sources import sha256_file
from mt_photos_triton.families import FAMILIES, chosen_model

RECORD_FILE = "export.json"
RECORD_FORMAT = 1
# export's modules every family's export goes through (the family names its own modules beside them)
SHARED_MODULES = ("common", "configs", "install", "onnx_graph", "record", "sources")
SKIPPED_PARTS = ("__pycache__",)


@dataclass
class Record:
    family: str
    model: str
    requested_source: str | None  # `--from` as given, or None
    source: str  # where the files came from
    source_sha256: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # the family's own findings (contracts, checks)
    written: dict[str, str] = field(default_factory=dict)  # repository-relative path -> sha256
    exporter: str = ""
    format: int = RECORD_FORMAT
    exported_at: str = ""  # when, in UTC (ISO 8601): the console shows it beside `source`


def record_path(repository: Path, family: str) -> Path:
    return Path(repository) / FAMILIES[family].entry_models[0] / RECORD_FILE


def fingerprint(family: str, *modules: Path) -> str:
    """sha256 over the exporter's code: the shared export modules, the family's own `modules`, the repository
    and families modules its configs follow, and the family's committed python models."""
    import export
    from mt_photos_triton import families, repository

    package = Path(export.__file__).parent
    sources = [
        *(package / f"{name}.py" for name in SHARED_MODULES),
        *modules,
        Path(repository.__file__),
        Path(families.__file__),
        *python_model_sources(family),
    ]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + Path(source).read_bytes() + b"\0")
    return digest.hexdigest()


def written_files(repository: Path, family: str) -> dict[str, str]:
    """Every file in the family's model folders (the record itself and caches aside), with its sha256."""
    repository = Path(repository)
    found = {}
    for name in family_models(family):
        for path in sorted((repository / name).rglob("*")):
            relative = path.relative_to(repository)
            if path.is_file() and path.name != RECORD_FILE and not set(relative.parts) & set(SKIPPED_PARTS):
                found[relative.as_posix()] = sha256_file(path)
    return found


def exports(repository: Path) -> dict[str, dict[str, str]]:
    """When and from where each exported family's models came, by entry model (for the console: `serve` hands it
    to the adapter; an adapter beside a remote Triton has no repository to read it from)."""
    found = {}
    for family in FAMILIES.values():
        if (saved := read(repository, family.name)) is not None:
            found.update({m: {"exported_at": saved.exported_at, "export_source": saved.source} for m in family.entry_models})
    return found


def read(repository: Path, family: str) -> Record | None:
    path = record_path(repository, family)
    try:
        data = json.loads(path.read_text())
        record = Record(**data)
    except (OSError, ValueError, TypeError):
        return None
    return record if record.format == RECORD_FORMAT and record.family == family else None


def up_to_date(repository: Path, family: str, model: str, requested_source: str | None, exporter: str) -> bool:
    record = read(repository, family)
    return (
        record is not None
        and record.model == model
        and record.requested_source == requested_source
        and record.exporter == exporter
        and bool(record.written)
        and record.written == written_files(repository, family)
    )


def start(
    repository: Path, family: str, model: str | None, source: str | None, force: bool, exporter: str
) -> ExportResult:
    """The first steps of every export: the model is `model` (`--model`), else the one the family's variables name;
    the committed python models are installed (when missing or different); then nothing more is to be done when
    the export is up to date (`skipped`), else the record is removed, so that a failed export does not look up to
    date."""
    model = model or chosen_model(FAMILIES[family], os.environ)
    install_python_models(repository, family)
    result = ExportResult(family, model)
    if not force and up_to_date(repository, family, model, source, exporter):
        result.skipped = True
    else:
        clear(repository, family)
    return result


def clear(repository: Path, family: str) -> None:
    """Before anything is rewritten: a failed export must not look up to date."""
    record_path(repository, family).unlink(missing_ok=True)


def write(repository: Path, record: Record) -> Record:
    """The record, with the files as they are now (call it last, once everything is written and checked)."""
    record.written = written_files(repository, record.family)
    record.exported_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = record_path(repository, record.family)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record), indent=2, ensure_ascii=False) + "\n")
    return record
