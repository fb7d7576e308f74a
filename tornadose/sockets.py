"""Socket helpers for servers (defined in :mod:`tornadose._compat.sockets`):
``listening_socket(host, port, user_timeout=...)`` makes a listening socket whose
connections drop unacknowledged data after ``user_timeout`` seconds (Linux's
``TCP_USER_TIMEOUT``), for ``uvicorn.Server(config).serve(sockets=[...])``;
``set_user_timeout(sock, seconds)`` sets it on one connection."""

from tornadose._compat.sockets import listening_socket, set_user_timeout

__all__ = ["listening_socket", "set_user_timeout"]
