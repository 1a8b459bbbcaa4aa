"""Where export gets files: the cache, downloads with a progress bar, pinned files (sha256), Hugging Face
snapshots (HF_ENDPOINT honoured), and local copies (`--from` a directory, a zip, or the URL of one)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from export.common import ExportError

log = logging.getLogger(__name__)

CACHE_ENV = "MT_PHOTOS_CACHE"
CACHE_NAME = "mt-photos-triton"
HF_ENDPOINT_ENV = "HF_ENDPOINT"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
HASH_CHUNK = 1 << 20
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
URL_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class PinnedFile:
    """One file of a source: where it is (a path inside the source, or a URL) and the sha256 it must have."""

    location: str
    sha256: str


def cache_dir(family: str) -> Path:
    """One folder a family: MT_PHOTOS_CACHE, else $XDG_CACHE_HOME/mt-photos-triton, else ~/.cache/mt-photos-triton."""
    base = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / CACHE_NAME
    return Path(base) / family


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ExportError(f"{path}: sha256 {actual} does not match the pinned {expected}; refusing to use it")


def pinned_in(root: Path, pinned: PinnedFile) -> Path:
    """A pinned file inside a local source, checked."""
    path = root / pinned.location
    if not path.is_file():
        raise ExportError(f"{path} is missing")
    verify_sha256(path, pinned.sha256)
    return path


def download(url: str, target: Path, sha256: str | None = None) -> Path:
    """`url` into `target` with a progress bar (through a .part file, so a broken download leaves nothing);
    with `sha256`, a file already there with that hash is kept and a download without it is refused."""
    from tqdm import tqdm

    if sha256 is not None and target.is_file() and sha256_file(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - https URLs we or the user chose
            total = int(response.headers.get("content-length") or 0) or None
            with open(partial, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(DOWNLOAD_CHUNK):
                    handle.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ExportError(
            f"could not download {url} ({type(error).__name__}); download it yourself and pass --from DIR"
        ) from error
    if sha256 is not None:
        try:
            verify_sha256(partial, sha256)
        except ExportError:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(target)
    return target


def download_pinned(pinned: PinnedFile, target_dir: Path) -> Path:
    return download(pinned.location, target_dir / pinned.location.rsplit("/", 1)[-1], pinned.sha256)


def hf_endpoint() -> str:
    """Hugging Face or the mirror the user set (users in China often need HF_ENDPOINT=https://hf-mirror.com)."""
    return os.environ.get(HF_ENDPOINT_ENV, HF_DEFAULT_ENDPOINT)


def _hub_unreachable(what: str, error: Exception) -> ExportError:
    return ExportError(
        f"could not {what} on {hf_endpoint()} ({type(error).__name__}). "
        "Set HF_ENDPOINT to a mirror, or download the files yourself and pass --from DIR_OR_ZIP"
    )


def resolve_hf_revision(repo_id: str, revision: str) -> str:
    """The commit a branch or tag points at now (so the record pins exactly what was downloaded)."""
    from huggingface_hub import HfApi

    try:
        return str(HfApi(endpoint=hf_endpoint()).model_info(repo_id, revision=revision).sha)
    except Exception as error:  # noqa: BLE001 - any hub failure means "cannot reach it"
        raise _hub_unreachable(f"resolve {repo_id}@{revision}", error) from error


def download_hf_snapshot(repo_id: str, revision: str, allow_patterns: list[str], target: Path) -> Path:
    """Files of one Hugging Face repository at a revision (huggingface_hub shows progress bars)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id=repo_id, revision=revision, allow_patterns=allow_patterns, local_dir=target,
                endpoint=hf_endpoint(),
            )
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise _hub_unreachable(f"download {repo_id}@{revision}", error) from error


def unpack_local(source: Path, work: Path) -> Path:
    """A local directory as is, or a zip (a wheel too) unpacked into `work`; a single top folder is stepped into."""
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
    if not source.exists():
        raise ExportError(f"--from {source}: no such file or directory")
    raise ExportError(f"{source} is neither a directory nor a zip file")


def open_source(source: str, work: Path) -> Path:
    """`--from`: a local directory or zip, or the URL of a zip (downloaded into `work`); the folder to read."""
    if source.startswith(URL_SCHEMES):
        name = source.rsplit("/", 1)[-1].split("?")[0] or "source.zip"
        return unpack_local(download(source, work / "download" / name), work)
    return unpack_local(Path(source).expanduser(), work)
