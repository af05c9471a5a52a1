"""``posp serve``: the switch runs until SIGTERM/SIGINT and shuts down gracefully."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
from pathlib import Path

from rich.console import Console

from posp.serve import serve
from posp.settings import load_settings


async def _wait_for_port(buffer: io.StringIO) -> int:
    for _ in range(200):
        found = re.search(r"listening on [\d.]+:(\d+)", buffer.getvalue())
        if found:
            return int(found.group(1))
        await asyncio.sleep(0.05)
    raise AssertionError("the switch did not report its port")


async def test_serve_accepts_connections_and_stops_on_sigterm(tmp_path: Path) -> None:
    settings = load_settings(
        terminal_port=0, metrics_enabled=False, network_enabled=False, data_dir=tmp_path
    )
    buffer = io.StringIO()
    task = asyncio.create_task(serve(settings, Console(file=buffer, width=200)))
    port = await _wait_for_port(buffer)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    # serve installed its own SIGTERM handler; never signal the test runner otherwise
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, timeout=15)
    assert "stopping" in buffer.getvalue()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    raise AssertionError("the terminal port still accepts connections after stop")
