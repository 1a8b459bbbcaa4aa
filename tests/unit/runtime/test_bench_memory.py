"""`bench memory`'s bookkeeping: the load it runs, the reference's report read back, the table's ratio."""

from __future__ import annotations

import json
import threading

import pytest

from mt_photos_triton.bench.memory import MIB, MemoryReport, ReferenceMemory, Sources, run_load
from mt_photos_triton.procfs import TreeMemory


class CountingRoute:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.calls += 1


def test_the_load_runs_each_route_at_each_level() -> None:
    routes = {"/a": CountingRoute(), "/b": CountingRoute()}
    run_load(routes, requests=3, levels=(1, 4))  # a level above the request count still fills its threads once
    assert [route.calls for route in routes.values()] == [3 + 4, 3 + 4]


def test_the_reference_report_is_read_back_and_set_beside_ours(capsys: pytest.CaptureFixture[str]) -> None:
    line = json.dumps({"start": {"pss": 900 * MIB, "rss": 1000 * MIB, "processes": 1},
                       "after": {"pss": 1900 * MIB, "rss": 2000 * MIB, "processes": 1}, "peak_rss": 2100 * MIB})
    reference = ReferenceMemory.from_json(line)
    assert reference.after.rss == 2000 * MIB and reference.peak_rss == 2100 * MIB
    report = MemoryReport("test", {"after start": TreeMemory(500 * MIB, 800 * MIB, 3),
                                   "after load": TreeMemory(2500 * MIB, 3000 * MIB, 3)}, reference)
    report.print()
    rows = {line.split()[0] + " " + line.split()[1]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("after")}
    assert rows["after start"].rstrip().endswith("0.50x")  # ours PSS over the reference's RSS
    assert rows["after load"].rstrip().endswith("1.25x")


def test_sources_name_what_the_reference_process_loads(tmp_path) -> None:
    sources = Sources(clip=tmp_path / "clip", ocr=True)
    assert sources.families == ["clip", "ocr"]
    assert sources.arguments() == [f"--clip={tmp_path / 'clip'}", "--ocr"]
