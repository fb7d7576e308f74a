"""HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1), as a pure function.

Only what a server streaming a response body needs: one data chunk. The last chunk
(``0\\r\\n\\r\\n``) that ends the body is the server's to write.
"""

from __future__ import annotations

__all__ = ["chunk"]


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body: its length in lowercase hexadecimal
    (no leading zeros, no extensions), CRLF, ``data`` unchanged, CRLF.

    Empty ``data`` gives ``b""``, not a chunk: a zero-length chunk would end the body.
    Nothing is refused.
    """
    if not data:
        return b""
    return b"%x\r\n" % len(data) + data + b"\r\n"
