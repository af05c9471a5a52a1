"""A tiny HTTP/1.1 JSON control endpoint for operators (behaviour injection).

Routes (bind to 127.0.0.1 unless you know better — there is no authentication):

* ``GET  /rules``           → the current rules (PANs masked)
* ``POST /rules``           ← JSON object of rule changes (see ``Rules.update``)
* ``POST /key-exchange``    ← ``{"key": "zpk" | "zak"}`` initiate a key exchange now
* ``GET  /health``          → ``{"connections": n}``
* ``GET  /traffic``         → ``{"received": {mti: n}, "in_progress": n, "reversals":
  {f90: n}}``: requests received since start, those not yet answered (or dropped),
  and 0420s received per original-data key

Every answer is JSON; a bad request answers 400 with ``{"error": ...}``; one connection
carries one request (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Final

from posp.network.zone import KEY_KIND_ZAK, KEY_KIND_ZPK

if TYPE_CHECKING:
    from issuer_sim.server import IssuerServer

_MAX_BODY_BYTES: Final = 65536
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found"}


async def _route(server: IssuerServer, method: str, path: str, body: bytes) -> tuple[int, Any]:
    if (method, path) == ("GET", "/rules"):
        return 200, server.rules.snapshot()
    if (method, path) == ("GET", "/health"):
        return 200, {"connections": len([c for c in server.connections if c.is_open])}
    if (method, path) == ("GET", "/traffic"):
        return 200, {
            "received": dict(server.received),
            "in_progress": server.in_progress,
            "reversals": dict(server.reversals),
        }
    if method == "POST" and path in ("/rules", "/key-exchange"):
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            if path == "/rules":
                server.rules.update(payload)
                return 200, server.rules.snapshot()
            kind = {"zpk": KEY_KIND_ZPK, "zak": KEY_KIND_ZAK}.get(str(payload.get("key")))
            if kind is None:
                raise ValueError('key must be "zpk" or "zak"')
            return 200, {"ok": await server.initiate_key_exchange(kind)}
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
    return 404, {"error": f"no route {method} {path}"}


async def _serve_one(
    server: IssuerServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = [*lines[0].split(" "), "", "", ""][:3]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = min(int(value.strip() or 0), _MAX_BODY_BYTES)
        body = await asyncio.wait_for(reader.readexactly(length), 5.0) if length else b""
        status, answer = await _route(server, method, path.split("?", 1)[0], body)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        status, answer = 400, {"error": "malformed HTTP request"}
    data = json.dumps(answer).encode()
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    try:
        await writer.drain()
    finally:
        writer.close()


async def start_control(server: IssuerServer, host: str, port: int) -> asyncio.Server:
    """Listen for control requests; the caller closes the returned server."""
    return await asyncio.start_server(lambda r, w: _serve_one(server, r, w), host, port)
