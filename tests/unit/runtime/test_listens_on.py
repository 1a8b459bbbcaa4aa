"""procfs.listens_on: which process holds a listening socket (the embedded server's readiness relies on it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from mt_photos_triton.procfs import listens_on


def test_a_listening_socket_is_found_for_its_process_only() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        assert not listens_on(os.getpid(), port)  # bound, not yet listening
        listener.listen()
        assert listens_on(os.getpid(), port)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert not listens_on(other.pid, port)
        finally:
            other.kill()
            other.wait()
    assert not listens_on(os.getpid(), port)
