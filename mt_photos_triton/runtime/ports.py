"""Loopback ports for the embedded server: the preferred ones where free, else ones the kernel picks."""

from __future__ import annotations

import socket

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as servers bind: connections in TIME_WAIT (after a restart) do not make the port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_ports(preferred: dict[str, int] | None = None) -> dict[str, int]:
    """The preferred ports where free, otherwise free ones chosen by the kernel."""
    chosen: dict[str, int] = {}
    for name, port in (preferred or DEFAULT_PORTS).items():
        if port and port_is_free(port) and port not in chosen.values():
            chosen[name] = port
        else:
            candidate = free_port()
            while candidate in chosen.values():
                candidate = free_port()
            chosen[name] = candidate
    return chosen
