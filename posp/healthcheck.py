"""``posp-healthcheck``: ask a running program a real protocol question; exit 0 or 1.

::

    posp-healthcheck auto                   pick the target from the container's PID 1
    posp-healthcheck switch [--host H] [--port P] [--terminal-id T] [--accept 00,97]
                            [--metrics-port P]
    posp-healthcheck hsm    [--host H] [--port P] [--header-length N]
    posp-healthcheck issuer [--host H] [--port P]

What each check proves:

* **switch** sends a terminal-link echo (0820, F60 = ``00`` + batch + ``301``)
  and expects an 0830 whose F39 is in ``--accept``.  The echo route loads the
  terminal from the store, so an answer proves framing, decoding, the pipeline
  and the store; ``97`` (terminal not registered) is accepted by default
  because a fresh deployment has no health terminal.  Provision one and pass
  ``--accept 00`` to insist on a full ``00``.  A store failure answers ``96``,
  which fails the check.  Then it asks the switch's readiness endpoint
  (``GET /ready`` on ``--metrics-port``, :mod:`posp.readiness`, the same one HAProxy
  checks): 200 only when the store, the HSM and the network link are up; a 503
  fails the check naming what is down.  ``--metrics-port 0`` skips it (a switch
  with ``metrics_enabled = false``).
* **hsm** sends host command ``B2`` (echo) and expects ``B3`` with error ``00``
  and the same data back.
* **issuer** sends a network-link echo (0800, F70 = ``301``, no MAC: network
  management other than key exchange carries none) and expects 0810 with F39
  ``00``.

``auto`` (the Docker HEALTHCHECK) reads ``/proc/1/cmdline``: ``posp serve`` →
switch, ``hsm-sim`` → hsm, ``issuer-sim serve`` → issuer, anything else (the
fleet, the conformance runner, one-shot admin commands) → healthy.  Ports come
from the programs' own environment variables (``POSP_TERMINAL_PORT``,
``POSP_HSM_PORT``, ``POSP_ISSUER_PORT``; the container shares them) with the
programs' defaults, and the host is always 127.0.0.1.

Without a target the program exits 2 (usage) naming the targets: a check that checks
nothing must not report healthy.

Invariant: every socket operation has a deadline (``--timeout-s``); the program
never raises to the caller, it prints one line and exits 0 (healthy), 1
(unhealthy) or 2 (usage).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from posp.errors import PospError
from posp.framing import AsciiLengthFramer, BinaryLengthFramer, frame_ascii, frame_binary
from posp.iso8583 import (
    Message,
    NetworkFrame,
    NetworkHeader,
    TerminalFrame,
    decode_network,
    decode_terminal,
    encode_network,
    encode_terminal,
)
from posp.version import add_version_flag

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
HEALTH_TPDU = bytes.fromhex("6000000000")
HEALTH_HEADER = "603100000000"  # magstripe app, spec 31, normal status, nothing to do
HEALTH_TRACE = "000001"
HSM_ECHO_DATA = b"PING"


class Unhealthy(Exception):
    """The program answered wrongly or not at all; the message says how."""


def _exchange(
    host: str,
    port: int,
    request: bytes,
    framer: BinaryLengthFramer | AsciiLengthFramer,
    timeout_s: float,
) -> bytes:
    """Send one framed request, return the first complete response body."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(4096)
                if not chunk:
                    raise Unhealthy(f"{host}:{port} closed the connection without an answer")
                bodies = [b for b in framer.feed(chunk) if b]
                if bodies:
                    return bodies[0]
    except TimeoutError:
        raise Unhealthy(f"no answer from {host}:{port} within {timeout_s} s") from None
    except OSError as exc:
        raise Unhealthy(f"{host}:{port}: {exc.strerror or exc}") from None


def terminal_echo_request(terminal_id: str, batch: str = "000001") -> bytes:
    """The framed 0820 echo a terminal sends (terminal-link.md §3)."""
    message = Message("0820", {11: HEALTH_TRACE, 41: terminal_id, 60: f"00{batch}301"})
    return frame_binary(encode_terminal(TerminalFrame(HEALTH_TPDU, HEALTH_HEADER, message)))


def check_switch(
    host: str, port: int, terminal_id: str, accept: frozenset[str], timeout_s: float
) -> str:
    body = _exchange(
        host, port, terminal_echo_request(terminal_id), BinaryLengthFramer(), timeout_s
    )
    try:
        answer = decode_terminal(body).message
    except PospError as exc:
        raise Unhealthy(f"switch answer did not decode: {exc}") from None
    code = answer.get(39)
    if answer.mti != "0830" or code not in accept:
        raise Unhealthy(f"switch answered {answer.mti} with 39={code!r}, expected one of {accept}")
    return f"switch {host}:{port} answered the echo with 39={code}"


def check_ready(host: str, metrics_port: int, timeout_s: float) -> str:
    """``GET /ready`` on the switch's metrics port: 200 ready, else Unhealthy naming
    what the switch reports down."""
    url = f"http://{host}:{metrics_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        try:
            down = ", ".join(json.loads(exc.read()).get("down", [])) or "unknown"
        except (ValueError, AttributeError):
            down = "unknown"
        raise Unhealthy(f"switch not ready ({url} answered {exc.code}): down: {down}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"switch readiness {url}: {reason}") from None
    return f"ready ({url})"


def check_hsm(host: str, port: int, header_length: int, timeout_s: float) -> str:
    header = b"HLTH"[:header_length].ljust(header_length, b"0")
    request = header + b"B2" + b"%04d" % len(HSM_ECHO_DATA) + HSM_ECHO_DATA
    body = _exchange(host, port, frame_binary(request), BinaryLengthFramer(), timeout_s)
    expected = header + b"B300" + HSM_ECHO_DATA
    if body != expected:
        raise Unhealthy(f"HSM answered {body[: header_length + 4]!r}, expected {expected!r}")
    return f"hsm {host}:{port} answered B2 with B300"


def network_echo_request() -> bytes:
    """The framed 0800/301 network echo (network-link.md §3; no MAC)."""
    message = Message("0800", {7: time.strftime("%m%d%H%M%S"), 11: "000001", 70: "301"})
    header = NetworkHeader(destination="00010000", source="HEALTHCHK")
    return frame_ascii(encode_network(NetworkFrame(header, message)))


def check_issuer(host: str, port: int, timeout_s: float) -> str:
    body = _exchange(host, port, network_echo_request(), AsciiLengthFramer(), timeout_s)
    try:
        answer = decode_network(body).message
    except PospError as exc:
        raise Unhealthy(f"network answer did not decode: {exc}") from None
    if answer.mti != "0810" or answer.get(39) != "00":
        raise Unhealthy(f"network answered {answer.mti} with 39={answer.get(39)!r}")
    return f"issuer {host}:{port} answered the network echo with 39=00"


def target_of_pid1(cmdline_path: Path = Path("/proc/1/cmdline")) -> str:
    """``switch`` / ``hsm`` / ``issuer`` from PID 1's command line, else ``none``."""
    try:
        argv = cmdline_path.read_bytes().split(b"\0")
    except OSError:
        return "none"
    names = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    if "hsm-sim" in names:
        return "hsm"
    if "issuer-sim" in names and "serve" in names:
        return "issuer"
    if "posp" in names and "serve" in names:
        return "switch"
    return "none"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.isdigit() else default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posp-healthcheck", description=__doc__.splitlines()[0])
    add_version_flag(p)
    p.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the whole check")
    sub = p.add_subparsers(dest="target")
    sub.add_parser("auto", help="pick the target from PID 1 (Docker HEALTHCHECK)")
    sw = sub.add_parser("switch", help="terminal-link echo to posp serve")
    sw.add_argument("--host", default="127.0.0.1")
    sw.add_argument("--port", type=int, default=_env_int("POSP_TERMINAL_PORT", 5800))
    sw.add_argument("--terminal-id", default="00000000", help="F41 of the echo (8 characters)")
    sw.add_argument("--accept", default="00,97", help="acceptable F39 values, comma separated")
    sw.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("POSP_METRICS_PORT", 9100),
        help="the switch's metrics port, for GET /ready (0 = skip the readiness check)",
    )
    hsm = sub.add_parser("hsm", help="B2 echo to hsm-sim")
    hsm.add_argument("--host", default="127.0.0.1")
    hsm.add_argument("--port", type=int, default=_env_int("POSP_HSM_PORT", 1500))
    hsm.add_argument("--header-length", type=int, default=_env_int("POSP_HSM_HEADER_LENGTH", 4))
    issuer = sub.add_parser("issuer", help="network echo to issuer-sim serve")
    issuer.add_argument("--host", default="127.0.0.1")
    issuer.add_argument("--port", type=int, default=_env_int("POSP_ISSUER_PORT", 9583))
    return p


def _check(args: argparse.Namespace) -> Callable[[], str]:
    timeout_s: float = args.timeout_s
    target = args.target
    if target == "auto":
        auto = target_of_pid1()
        if auto == "none":
            return lambda: "auto: PID 1 is not a server (switch, hsm, issuer): nothing to check"
        return _check(build_parser().parse_args(["--timeout-s", str(timeout_s), auto]))
    if target == "switch":
        accept = frozenset(c.strip() for c in args.accept.split(",") if c.strip())

        def switch() -> str:
            echo = check_switch(args.host, args.port, args.terminal_id, accept, timeout_s)
            if args.metrics_port == 0:
                return echo
            return f"{echo}; {check_ready(args.host, args.metrics_port, timeout_s)}"

        return switch
    if target == "hsm":
        return lambda: check_hsm(args.host, args.port, args.header_length, timeout_s)
    return lambda: check_issuer(args.host, args.port, timeout_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.target is None:
        parser.error("name what to check: switch, hsm, issuer, or auto (from PID 1)")
    try:
        print(_check(args)())
    except (Unhealthy, PospError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_UNHEALTHY) from None
    raise SystemExit(EXIT_HEALTHY)


if __name__ == "__main__":
    main()
