"""Programs run by the tests as subprocesses (see the ``start_program`` fixture)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Program:
    """A program started by ``start_program``, its stdout and stderr going to files."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def stdout_text(self) -> str:
        return self.stdout.read_text(errors="replace")

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def describe(self) -> str:
        """The exit status and output, for failure messages."""
        return (
            f"returncode={self.proc.poll()}\n"
            f"--- stdout ---\n{self.stdout_text()}\n"
            f"--- stderr ---\n{self.stderr_text()}"
        )


StartProgram = Callable[..., Program]


async def wait_for_port(program: Program, port: int, timeout: float = 15.0) -> None:
    """Poll until 127.0.0.1:``port`` accepts connections; fail if the program dies
    first or nothing listens after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if program.proc.poll() is not None:
            pytest.fail(f"program exited before accepting connections\n{program.describe()}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, TimeoutError):
            if loop.time() > deadline:
                pytest.fail(
                    f"nothing listening on port {port} after {timeout} s\n{program.describe()}"
                )
            await asyncio.sleep(0.02)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def wait_for_exit(program: Program, since: float, deadline: float) -> int:
    """The program's exit status; fails if it is still running ``deadline`` s after
    ``since`` (a ``loop.time()``, e.g. when it was signalled)."""
    loop = asyncio.get_running_loop()
    while program.proc.poll() is None:
        if loop.time() - since > deadline:
            pytest.fail(f"still running {deadline} s after the signal\n{program.describe()}")
        await asyncio.sleep(0.01)
    return program.proc.returncode
