"""TLS on the terminal listener (server certificate, optional client certificates)
and on the HSM link (switch client ↔ hsm-sim), with certificates made in the test
(issue 14 item 8)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry

from hsm_sim.server import start_hsm_server
from posp.errors import ConfigError, HsmUnavailable
from posp.framing import frame_binary
from posp.hsm import open_hsm_client
from posp.iso8583 import Message, TerminalFrame, decode_terminal, encode_terminal
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.settings import load_settings
from posp.switch import Switch
from posp.tls import ClientTls, ListenerTls, client_context, server_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def pem_files(tmp_path: Path, name: str, cert: trustme.LeafCert) -> tuple[Path, Path]:
    chain, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


def ca_file(tmp_path: Path, ca: trustme.CA, name: str = "ca") -> Path:
    path = tmp_path / f"{name}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def echo_frame() -> bytes:
    """A 0820/301 echo from an unknown terminal: any answer proves the link works."""
    message = Message("0820", {11: "000001", 41: "99999999", 60: "00000001301"})
    frame = TerminalFrame(bytes.fromhex("6000030000"), "603100000000", message)
    return frame_binary(encode_terminal(frame))


async def exchange(port: int, context: ssl.SSLContext | None) -> Message:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
    )
    try:
        writer.write(echo_frame())
        length = int.from_bytes(await reader.readexactly(2), "big")
        return decode_terminal(await reader.readexactly(length)).message
    finally:
        writer.close()


@pytest.fixture
async def tls_switch(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Switch]:
    chain, key = pem_files(tmp_path, "switch", ca.issue_cert("localhost", "127.0.0.1"))
    settings = load_settings(
        terminal_port=0,
        metrics_enabled=False,
        network_enabled=False,
        data_dir=tmp_path,
        tls={"cert_file": chain, "key_file": key},
    )
    switch = Switch(settings, hsm=inprocess_hsm_client(), registry=CollectorRegistry())
    await switch.start()
    yield switch
    await switch.stop()


async def test_a_terminal_speaks_to_the_switch_over_tls(
    tls_switch: Switch, tmp_path: Path, ca: trustme.CA
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file(tmp_path, ca)))
    answer = await exchange(tls_switch.port, context)
    assert answer.mti == "0830" and answer[39] == "97"


async def test_plain_tcp_to_the_tls_listener_gets_no_answer(tls_switch: Switch) -> None:
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await asyncio.wait_for(exchange(tls_switch.port, None), timeout=15)


async def test_the_certificate_expiry_is_exported(tls_switch: Switch) -> None:
    value = tls_switch.registry.get_sample_value(
        "posp_tls_certificate_expiry_timestamp_seconds", {"listener": "terminal"}
    )
    assert value is not None and value > 1.7e9


async def test_a_listener_with_a_client_ca_refuses_clients_without_a_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    client_ca = trustme.CA()
    chain, key = pem_files(tmp_path, "switch", ca.issue_cert("localhost"))
    settings = load_settings(
        terminal_port=0,
        metrics_enabled=False,
        network_enabled=False,
        data_dir=tmp_path,
        tls={
            "cert_file": chain,
            "key_file": key,
            "client_ca_file": ca_file(tmp_path, client_ca, "cca"),
        },
    )
    switch = Switch(settings, hsm=inprocess_hsm_client(), registry=CollectorRegistry())
    await switch.start()
    try:
        anonymous = ssl.create_default_context(cafile=str(ca_file(tmp_path, ca)))
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(exchange(switch.port, anonymous), timeout=15)
        known = ssl.create_default_context(cafile=str(ca_file(tmp_path, ca)))
        terminal_chain, terminal_key = pem_files(tmp_path, "pos", client_ca.issue_cert("pos-1"))
        known.load_cert_chain(terminal_chain, terminal_key)
        answer = await exchange(switch.port, known)
        assert answer.mti == "0830"
    finally:
        await switch.stop()


async def test_the_switch_reaches_the_hsm_over_tls_and_refuses_an_unknown_server(
    tmp_path: Path, ca: trustme.CA
) -> None:
    chain, key = pem_files(tmp_path, "hsm", ca.issue_cert("hsm.local"))
    server = await start_hsm_server(port=0, metrics_port=0, tls_cert_file=chain, tls_key_file=key)
    try:
        trusted = client_context(ClientTls(ca_file=ca_file(tmp_path, ca)), "hsm_tls")
        client = open_hsm_client(
            f"tcp://127.0.0.1:{server.port}?connections=1",
            ssl_context=trusted,
            server_name="hsm.local",
        )
        await client.start()
        try:
            key_under_lmk = await client.generate_key("001", "U")
            assert key_under_lmk.kcv
        finally:
            await client.close()
        stranger = client_context(
            ClientTls(ca_file=ca_file(tmp_path, trustme.CA(), "other")), "hsm_tls"
        )
        refused = open_hsm_client(
            f"tcp://127.0.0.1:{server.port}?connections=1&timeout_s=1",
            ssl_context=stranger,
            server_name="hsm.local",
        )
        await refused.start()
        try:
            with pytest.raises(HsmUnavailable):
                await refused.generate_key("001", "U")
        finally:
            await refused.close()
    finally:
        await server.close()


def test_bad_tls_settings_name_the_setting_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"tls\.key_file is required"):
        server_context(ListenerTls(cert_file=missing), "tls")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        server_context(ListenerTls(cert_file=missing, key_file=missing), "tls")
    with pytest.raises(ConfigError, match=r"hsm_tls\.ca_file.*nope\.pem"):
        client_context(ClientTls(ca_file=missing), "hsm_tls")
