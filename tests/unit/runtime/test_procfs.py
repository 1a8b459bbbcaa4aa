"""Reading the machine's load from /proc/loadavg (what the CLIP preprocessing asks before it splits a resize)."""

from __future__ import annotations

from mt_photos_triton.procfs import core_to_spare, runnable_threads


def test_runnable_threads_reads_the_running_count() -> None:
    assert runnable_threads("0.52 0.61 0.70 3/412 98765\n") == 3
    assert runnable_threads("garbage") is None
    assert runnable_threads("") is None


def test_this_machine_reports_at_least_the_caller() -> None:
    running = runnable_threads()
    assert running is not None and running >= 1  # the test itself is running
    assert isinstance(core_to_spare(), bool)
