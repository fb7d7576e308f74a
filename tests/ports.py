"""Loopback ports for the servers tests start: picked so nothing else takes them."""

from __future__ import annotations

import random
import socket

import pytest

__all__ = ["PICKED_PORTS", "bindable", "free_port", "free_port_pair"]

#: Where :func:`free_port` picks ports for the servers tests start as programs: below
#: Linux's ephemeral range (32768-60999 by default), from which every outgoing
#: connection takes its local port, so no client socket of the suite can take a port
#: between its pick and the program's bind ("Address already in use" flaked a test on
#: a busy run); and below the ports of the tests' Redis Cluster nodes
#: (``tests/redis_cluster_support``: 20000-22767, their bus ports 10000 higher).
PICKED_PORTS = range(10000, 20000)
_HANDED_OUT: set[int] = set()


def bindable(port: int) -> bool:
    """Whether a socket can listen on ``port`` of 127.0.0.1 now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """A TCP port ``P`` on 127.0.0.1 such that ``P`` .. ``P + count - 1`` were free a
    moment ago, picked at random in :data:`PICKED_PORTS`."""
    for _ in range(1000):
        port = random.randrange(PICKED_PORTS.start, PICKED_PORTS.stop - count)
        ports = set(range(port, port + count))
        if not ports & _HANDED_OUT and all(bindable(p) for p in ports):
            _HANDED_OUT.update(ports)  # never twice in a run (picked, not yet bound)
            return port
    pytest.fail(f"no {count} consecutive free ports in {PICKED_PORTS}")


def free_port_pair() -> int:
    """A port ``P`` such that ``P`` and ``P + 1`` were both free a moment ago (``tornadose
    demo`` and ``serve`` listen on both)."""
    return free_port(2)
