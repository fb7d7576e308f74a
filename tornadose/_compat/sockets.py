"""TCP settings that find dead peers quickly (Linux ``TCP_USER_TIMEOUT``).

A client that vanishes without closing its connection (a dropped network, a sleeping
laptop) is only noticed when a write to it fails, which by default takes the kernel
many minutes of retransmissions. ``TCP_USER_TIMEOUT`` bounds how long sent data may
stay unacknowledged before the kernel gives up on the connection: the server's next
write fails, and the subscriber is removed.

* Tornado: the handlers' ``tcp_user_timeout`` option sets it on each stream's socket.
* Any server that accepts ready-made sockets (uvicorn's ``Server.serve(sockets=...)``,
  Tornado's ``HTTPServer.add_sockets``): :func:`listening_socket` makes a listening
  socket with it set, and Linux gives every accepted connection the same setting.

Elsewhere than Linux the option does not exist and these functions do nothing.
"""

from __future__ import annotations

import socket

__all__ = ["listening_socket", "set_user_timeout"]


def set_user_timeout(sock: socket.socket, seconds: float) -> bool:
    """Set ``TCP_USER_TIMEOUT`` on ``sock``; whether the platform supports it."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None:
        return False
    sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))
    return True


def listening_socket(
    host: str, port: int, *, user_timeout: float | None = None, backlog: int = 2048
) -> socket.socket:
    """A bound, listening, non-blocking TCP socket for ``host:port`` (``port`` 0: any
    free one), with ``TCP_USER_TIMEOUT`` set when ``user_timeout`` is given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if user_timeout is not None:
            set_user_timeout(sock, user_timeout)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
