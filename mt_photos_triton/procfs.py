"""Live processes as Linux's /proc shows them: what the runtime and the tests need to find the server's processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    argv: list[str]
    state: str  # "R", "S", ... "Z" for a zombie
    ppid: int
    session: int

    @property
    def zombie(self) -> bool:
        return self.state == "Z"


def processes() -> Iterator[Process]:
    """Every process readable now (one that exits while being read is skipped)."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            # after the command name in parentheses: state, ppid, pgrp, session, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield Process(
            pid=int(entry.name),
            argv=[part.decode(errors="replace") for part in argv if part],
            state=fields[0],
            ppid=int(fields[1]),
            session=int(fields[3]),
        )


def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren, ... (a server started in its own session is found by walking parents)."""
    children: dict[int, list[int]] = {}
    for process in processes():
        children.setdefault(process.ppid, []).append(process.pid)
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid` (None once it is gone)."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of `pid` (smaps_rollup's Pss): each page shared by N processes counts 1/N, so a
    tree's sum counts shared libraries, page-cache mappings and shared-memory regions once. None once it is gone
    (or where smaps_rollup cannot be read: kernels before 4.14, another user's process)."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class TreeMemory:
    """The memory of a process tree: PSS (shared pages counted once) and RSS (each process's whole resident set),
    summed over `processes` processes."""

    pss: int
    rss: int
    processes: int


def tree_memory(*roots: int) -> TreeMemory:
    """The roots and their descendants, each process once (the served tree: `serve`'s process with the embedded
    tritonserver and every python-model stub below it; or, in a bench, the server and the adapter's process)."""
    members = list(dict.fromkeys(member for root in roots for member in (root, *descendants(root))))
    pss = [value for member in members if (value := pss_bytes(member)) is not None]
    rss = [value for member in members if (value := rss_bytes(member)) is not None]
    return TreeMemory(pss=sum(pss), rss=sum(rss), processes=len(rss))


def runnable_threads(loadavg: str | None = None) -> int | None:
    """Threads runnable right now on this machine, the caller included: the 'running' of /proc/loadavg's fourth
    field ("2/78"). None where that cannot be read."""
    try:
        text = loadavg if loadavg is not None else (PROC / "loadavg").read_text()
        return int(text.split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def core_to_spare() -> bool:
    """Whether a second thread would find a core of its own now: runnable threads, the caller included, no more
    than the cores this process may use. True where /proc cannot tell."""
    running = runnable_threads()
    return running is None or running <= len(os.sched_getaffinity(0))


def mapped_files(directory: Path) -> set[str]:
    """Names of the files in `directory` that some live process has mapped (as /proc/<pid>/maps lists them)."""
    prefix = f"{directory}/"
    names = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            maps = (entry / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            path = line.rsplit(" ", 1)[-1]
            if path.startswith(prefix):
                names.add(path[len(prefix):])
    return names


LISTEN = "0A"  # the TCP state /proc/net/tcp prints for a listening socket


def listens_on(pid: int, port: int) -> bool:
    """Process `pid` itself holds a listening TCP socket on `port` (IPv4 or IPv6), as /proc/net/tcp* shows."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return False
    try:
        fds = os.listdir(PROC / str(pid) / "fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(PROC / str(pid) / "fd" / fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False
