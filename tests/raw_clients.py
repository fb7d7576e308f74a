"""Raw-socket clients for tests that check the exact bytes a server writes: an HTTP/1.x
client with a strict chunked-body reader, and a WebSocket handshake and frame reader.

Every read has a timeout (:data:`TIMEOUT`), so a server writing too little fails the
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct

#: Seconds any single read may take.
TIMEOUT = 5.0

#: The GUID of the WebSocket handshake (RFC 6455, section 1.3).
_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def header_of(head: bytes, name: str) -> str | None:
    """The value of header ``name`` in a response head (``None``: absent)."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == name.lower():
            return value.strip()
    return None


class RawHTTP:
    """One TCP connection speaking HTTP/1.x by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Every byte :meth:`chunk` read, framing included.
        self.framed = bytearray()

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> RawHTTP:
        """Connect to 127.0.0.1:``port`` (with ``SO_RCVBUF`` = ``receive_buffer``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT
            )
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    def send(self, method: str, path: str, version: str = "HTTP/1.1", **headers: str) -> None:
        """Send a request without a body (``Host`` is added)."""
        lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def head(self) -> bytes:
        """The next response head (status line and headers, up to the blank line)."""
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)

    async def chunk(self) -> bytes | None:
        """The next chunk of a chunked body, ``None`` at the last chunk (which must be
        ``0`` CRLF CRLF: no extensions, no trailers). Anything else fails the test:
        a size in anything but lowercase hex without leading zeros, a missing CRLF."""
        async with asyncio.timeout(TIMEOUT):
            line = await self.reader.readuntil(b"\r\n")
            self.framed += line
            size_field = line[:-2]
            assert size_field, f"empty chunk-size line: {line!r}"
            assert all(c in b"0123456789abcdef" for c in size_field), line
            assert size_field == b"0" or not size_field.startswith(b"0"), line
            size = int(size_field, 16)
            if size == 0:
                ending = await self.reader.readexactly(2)
                self.framed += ending
                assert ending == b"\r\n", f"the last chunk is not followed by CRLF: {ending!r}"
                return None
            data = await self.reader.readexactly(size)
            crlf = await self.reader.readexactly(2)
            self.framed += data + crlf
            assert crlf == b"\r\n", f"a chunk of {size} bytes ends with {crlf!r}"
            return data

    async def chunked_body(self) -> bytes:
        """The rest of a chunked body, to its last chunk."""
        body = bytearray()
        while (data := await self.chunk()) is not None:
            body += data
        return bytes(body)

    async def chunked_wire(self) -> bytes:
        """The rest of a chunked body as it came, framing included, to its last chunk
        (each chunk checked as :meth:`chunk` does)."""
        start = len(self.framed)
        while await self.chunk() is not None:
            pass
        return bytes(self.framed[start:])

    async def until_eof(self) -> bytes:
        """Everything until the server closes the connection."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def exactly(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT)

    def abort(self) -> None:
        """Drop the connection with a reset (no FIN); nothing once it is closed."""
        if self.writer.transport.is_closing():
            return
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def websocket_handshake(
    port: int, path: str, extensions: str | None = None
) -> tuple[RawHTTP, bytes]:
    """Open a WebSocket by hand (RFC 6455, section 4.1), offering ``extensions``:
    returns the connection and the response head; fails unless the server switched
    protocols with the right ``Sec-WebSocket-Accept``."""
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    if extensions is not None:
        headers["Sec-WebSocket-Extensions"] = extensions
    raw = await RawHTTP.connect(port)
    raw.send("GET", path, **headers)
    head = await raw.head()
    assert head.startswith(b"HTTP/1.1 101 "), head
    digest = hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest()
    assert header_of(head, "Sec-WebSocket-Accept") == base64.b64encode(digest).decode(), head
    return raw, head


async def read_frame(raw: RawHTTP) -> tuple[int, bytes]:
    """The next server frame (unmasked): its first byte (FIN, RSV, opcode) and payload."""
    first, second = await raw.exactly(2)
    assert second & 0x80 == 0, "a server frame must not be masked"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await raw.exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await raw.exactly(8), "big")
    return first, await raw.exactly(length)
