"""The idle timer counts complete frames only: a client trickling bytes that never
complete a frame cannot hold a connection slot (review finding 8)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from posp.hsm.api import HsmClient
from posp.store import Store
from posp.switch import Switch
from tests.switch.test_robustness import start_switch


async def test_a_byte_trickle_without_a_frame_is_closed_as_idle(
    tmp_path: Path, store: Store, hsm: HsmClient, switch: Switch
) -> None:
    await switch.stop()
    idle = await start_switch(tmp_path, store, hsm, limits={"idle_timeout_s": 0.3})
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", idle.port)
        writer.write(b"\x01\x00")  # announces a 256-byte frame
        closed = False
        for _ in range(40):  # 2 s of one byte per 50 ms, well past the idle timeout
            writer.write(b"\x60")
            try:
                closed = await asyncio.wait_for(reader.read(1), 0.05) == b""
            except TimeoutError:
                continue
            if closed:
                break
        assert closed
        writer.close()
    finally:
        await idle.stop()
