"""What every family's export shares: errors, hashes, sources (Hugging Face, mirrors, local), results."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


class ExportError(RuntimeError):
    """An export that cannot be done; the message tells the user what to do."""


@dataclass
class ExportResult:
    family: str
    model: str
    written: list[str] = field(default_factory=list)  # Triton model names written
    skipped: bool = False  # everything already there (idempotent run without --force)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        state = "up to date" if self.skipped else f"wrote {', '.join(self.written) or 'nothing'}"
        extra = "".join(f"\n    note: {n}" for n in self.notes)
        return f"{self.family}: {self.model}: {state}{extra}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def code_fingerprint(*sources: Path) -> str:
    """sha256 over the exporter's own source files, and mt_photos_triton/repository.py, through which every export
    writes its configs. Each export records it, and a repository written by another version of them (other
    configs, other graph rewrites) is not up to date: upgrading and re-running export rewrites it, where matching
    model hashes alone would keep the old configs."""
    from mt_photos_triton import repository

    digest = hashlib.sha256()
    for source in (*sources, Path(repository.__file__)):
        digest.update(source.name.encode() + b"\0" + Path(source).read_bytes() + b"\0")
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ExportError(f"{path}: sha256 {actual} does not match the pinned {expected}; refusing to use it")


def hf_endpoint() -> str:
    """Hugging Face or the mirror the user set (users in China often need HF_ENDPOINT=https://hf-mirror.com)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def download_hf_snapshot(repo_id: str, revision: str, allow_patterns: list[str], target: Path) -> Path:
    """Files of one Hugging Face repository at a pinned revision (huggingface_hub shows progress bars)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                allow_patterns=allow_patterns,
                local_dir=target,
                endpoint=hf_endpoint(),
            )
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise ExportError(
            f"could not download {repo_id}@{revision} from {hf_endpoint()} ({type(error).__name__}). "
            "Set HF_ENDPOINT to a mirror, or download the files yourself and pass --from DIR_OR_ZIP"
        ) from error


def unpack_local(source: Path, work: Path) -> Path:
    """A local directory as is, or a zip unpacked into `work` (a single top folder is stepped into)."""
    if source.is_dir():
        return source
    if source.is_file() and zipfile.is_zipfile(source):
        target = work / source.stem
        if target.exists():
            shutil.rmtree(target)
        with zipfile.ZipFile(source) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ExportError(f"{source}: unsafe path {member!r} in the archive")
            archive.extractall(target)
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else target
    raise ExportError(f"{source} is neither a directory nor a zip file")
