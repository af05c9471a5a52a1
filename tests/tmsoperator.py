"""The switch operator's side of the terminal-management conformance scenarios,
in process: parameter sets and IC sets through the running switch's
``TerminalManagement``, packages in a TUF repository served by the real TMS HTTP
endpoint, rollouts started like ``posp tms rollout start``."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from posp.tms.ic import Aid, Capk
from posp.tms.params import ParamValues, Scope
from posp.tms.server import serve
from posp.tms.service import TerminalManagement
from terminals.management import SoftwareLink, http_offers
from terminals.updater import TerminalSoftware, TerminalUpdater
from tests.tms.lab import ACQUIRER, MODEL, Lab

RID, MODULUS = "A000000333", "B5" * 144


@dataclass
class InProcessTmsOperator:
    tms: TerminalManagement
    tmp: Path
    lab: Lab | None = None
    base_url: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Task[None] | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(2))

    async def set_params(self, **values: object) -> None:
        await self.tms.tms.set_param_set(Scope.GROUP, "default", ParamValues(**values))  # type: ignore[arg-type]
        self.tms.forget()

    async def add_ic(self) -> None:
        index = f"{next(self._counter):02X}"
        digest = hashlib.sha1(bytes.fromhex(RID + index + MODULUS + "03")).hexdigest()
        capk = Capk(
            rid=RID, index=index, modulus=MODULUS, exponent="03", expiry="301231", hash=digest
        )
        await self.tms.ic.put_capk(capk)
        await self.tms.ic.put_aid(Aid(aid=f"A0000003330101{index}"))
        self.tms.forget()

    async def _endpoint(self) -> Lab:
        if self.lab is None:
            self.lab = Lab.create(self.tmp)
            bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._server = asyncio.create_task(
                serve(
                    self.lab.repo,
                    "127.0.0.1",
                    0,
                    offers=self.tms.rollouts.offer,
                    started=bound.set_result,
                    stop=self._stop,
                )
            )
            self.base_url = f"http://127.0.0.1:{await asyncio.wait_for(bound, 10)}"
        return self.lab

    async def offer_update(self, terminal_id: str, *, corrupt: bool) -> SoftwareLink:
        lab = await self._endpoint()
        version = f"V{next(self._counter)}.0"
        target = lab.publish(version)
        if corrupt:  # a compromised distribution server changed the package bytes
            for path in (lab.repo.targets_dir / MODEL).glob(f"*{version}.pkg"):
                data = bytearray(path.read_bytes())
                data[-1] ^= 0xFF
                path.write_bytes(bytes(data))
        group = f"rollout-{terminal_id}-{version}"
        await self.tms.tms.set_group(terminal_id, group)
        await self.tms.rollouts.start(group, target, version, (100.0,), 5.0)
        self.tms.forget()
        updater = TerminalUpdater(
            TerminalSoftware(MODEL, ACQUIRER),
            lab.built_in_root,
            self.tmp / "terminals" / f"{terminal_id}-{version}",
            self.base_url,
        )
        return SoftwareLink(updater, http_offers(self.base_url))

    async def install_state(self, terminal_id: str) -> tuple[str | None, str | None]:
        known = (await self.tms.view(terminal_id, 0)).known
        return (known.app_version, known.install_result) if known else (None, None)

    async def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            await self._server
