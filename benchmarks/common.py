"""What the runner, the load client and the servers share.

* **Payloads.** Every published message is a text of exactly ``size`` characters::

      S00000042 T0000123456789012345 xxxxxxxx...

  ``S`` is followed by the sequence number (8 digits) and ``T`` by the publish time
  in nanoseconds of ``time.monotonic_ns()`` (19 digits). On Linux that clock is
  ``CLOCK_MONOTONIC``, shared by every process of the machine, so the client's own
  ``time.monotonic_ns()`` at arrival minus ``T`` is the publish-to-receive latency.
  The client finds ``S<seq> T<time>`` with one regular expression, whatever the
  framing around it (SSE ``data:`` lines, HTTP chunks, WebSocket frames, JSON).

* **Control protocol.** The runner drives every child process (servers and client)
  with one JSON object per line on the child's stdin; a child answers with lines
  ``@@ <json>`` on its stdout (anything else there, such as a framework's log line,
  is ignored). A child whose stdin closes exits: children never outlive the runner.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

#: ``S<8-digit seq> T<19-digit monotonic ns>``: what the client looks for.
PAYLOAD_PATTERN = re.compile(rb"S(\d{8}) T(\d{19})")
#: The longest match minus one: how many bytes a chunk's tail must be kept for a
#: match split between two reads.
SPLIT_TAIL = 29
#: The smallest payload: the header alone and one space.
MIN_SIZE = 30

#: The prefix of a control line written by a child on stdout.
CONTROL_PREFIX = "@@ "


def make_payload(seq: int, size: int) -> str:
    """A payload of ``size`` characters carrying ``seq`` and the publish time (now)."""
    head = f"S{seq:08d} T{time.monotonic_ns():019d} "
    return head + "x" * (size - len(head)) if size > len(head) else head


def emit(obj: dict[str, Any]) -> None:
    """Write one control line (the answer of a child process) on stdout."""
    sys.stdout.write(CONTROL_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_nofile(wanted: int | None = None) -> int:
    """Raise this process's open-file limit to ``wanted`` (default: the hard limit).

    The benchmark needs more sockets than the usual soft limit of 1024; the library
    itself never touches the limit. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else min(wanted, hard)
    if hard == resource.RLIM_INFINITY and wanted is None:
        target = max(soft, 65536)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The runner's commands, read from stdin without blocking the event loop.

    Ends when stdin closes (the runner is gone or done).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield json.loads(line)
