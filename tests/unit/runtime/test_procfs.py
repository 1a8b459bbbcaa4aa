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


def test_a_tree_counts_its_children_and_pss_is_at_most_rss() -> None:
    import os
    import subprocess
    import sys

    from mt_photos_triton.procfs import pss_bytes, rss_bytes, tree_memory

    alone = tree_memory(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        together = tree_memory(os.getpid())
        assert together.processes == alone.processes + 1
        child_pss, child_rss = pss_bytes(child.pid), rss_bytes(child.pid)
        assert child_pss is not None and child_rss is not None and 0 < child_pss <= child_rss
        assert together.pss > alone.pss and together.rss > alone.rss
        assert tree_memory(os.getpid(), child.pid).processes == together.processes  # each process once
    finally:
        child.kill()
        child.wait()
    assert pss_bytes(child.pid) is None  # gone
