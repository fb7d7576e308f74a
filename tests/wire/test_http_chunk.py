"""HTTP/1.1 chunk framing (:mod:`tornadose.wire.http_chunk`), byte for byte."""

from __future__ import annotations

import pytest

from tornadose.wire.http_chunk import chunk


@pytest.mark.parametrize(
    ("size", "hex_size"),
    [(1, b"1"), (15, b"f"), (16, b"10"), (255, b"ff"), (256, b"100"), (70000, b"11170")],
)
def test_a_chunk_is_its_hex_length_crlf_the_data_crlf(size: int, hex_size: bytes) -> None:
    """Lowercase hexadecimal without leading zeros or extensions, the data unchanged."""
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert chunk(data) == hex_size + b"\r\n" + data + b"\r\n"


def test_empty_data_is_no_chunk_at_all() -> None:
    """A zero-length chunk would end the body: empty data gives nothing to write."""
    assert chunk(b"") == b""


def test_chunks_read_back_by_a_strict_parser() -> None:
    """Chunks of every size class, then the last chunk, rebuild the data exactly."""
    parts = [b"a", "é€😀".encode() * 40, b"\r\n0\r\n\r\n", bytes(4096), b"z" * 65537]
    body = b"".join(chunk(part) for part in parts) + b"0\r\n\r\n"
    assert parse_chunked(body) == parts


def parse_chunked(body: bytes) -> list[bytes]:
    """The chunks of a complete chunked body (RFC 9112, section 7.1), refusing any
    deviation: no extensions, no trailers, CRLF exactly, nothing after the end."""
    chunks: list[bytes] = []
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size_field = body[position:line_end]
        assert size_field, body[position:]
        assert all(c in b"0123456789abcdef" for c in size_field), size_field
        size = int(size_field, 16)
        start = line_end + 2
        if size == 0:
            assert body[start:] == b"\r\n", body[start:]
            return chunks
        chunks.append(body[start : start + size])
        assert body[start + size : start + size + 2] == b"\r\n"
        position = start + size + 2
