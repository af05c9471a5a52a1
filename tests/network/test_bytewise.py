"""The network-link Protocol (both ends: the switch's link and the issuer
simulator's server) cuts frames fed one byte at a time exactly as whole ones."""

from __future__ import annotations

from posp.errors import DecodeError
from posp.framing import AsciiLengthFramer, frame_ascii
from posp.iso8583 import NetworkFrame, NetworkHeader, decode_network, encode_network
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.network import zone
from posp.network.transport import FrameProtocol
from tests.bytewise import FakeTransport, feed_bytewise, read_written
from tests.network.conftest import issuer_settings


def echo_frame(stan: str) -> bytes:
    message = zone.management_request(zone.NMI_ECHO)
    message.fields.update(
        {7: zone.transmission_time(8.0), 11: stan, 32: "48010000", 33: "48010000"}
    )
    return frame_ascii(encode_network(NetworkFrame(NetworkHeader("NET", "ACQ"), message)))


async def test_link_protocol_delivers_frames_fed_one_byte_at_a_time() -> None:
    frames: list[NetworkFrame] = []
    bad: list[DecodeError] = []
    protocol = FrameProtocol(lambda _p, f: frames.append(f), lambda _p, e: bad.append(e))
    protocol.connection_made(FakeTransport())
    feed_bytewise(protocol, echo_frame("000001") + echo_frame("000002"))
    assert [f.message.get(11) for f in frames] == ["000001", "000002"] and bad == []
    assert all(f.message.mti == "0800" for f in frames)


async def test_issuer_server_answers_a_frame_fed_one_byte_at_a_time() -> None:
    from issuer_sim.app import start_issuer

    issuer = await start_issuer(issuer_settings(), hsm=inprocess_hsm_client())
    try:
        protocol = issuer._new_protocol()
        transport = FakeTransport()
        protocol.connection_made(transport)
        feed_bytewise(protocol, echo_frame("000042"))
        framer = AsciiLengthFramer(8192)
        answers: list[bytes] = []
        while not answers:
            answers = framer.feed(await read_written(transport, 1))
            transport.chunks.clear()
        answer = decode_network(answers[0]).message
        assert (answer.mti, answer.get(11), answer.get(39)) == ("0810", "000042", "00")
    finally:
        await issuer.close()
