"""The chip dialogue without sockets: the simulated card (terminals.chip) builds F55 and
the ARQC, the issuer helper (issuer_sim.chip) verifies it through the HSM engine's KQ
and answers tag 91 and scripts, and the card's second GENERATE AC gives TC or AAC."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hsm_sim.engine import HsmEngine
from issuer_sim.chip import (
    PIN_UNBLOCK,
    PUT_DATA,
    ChipDataError,
    atc_is_fresh,
    issuer_script,
    kq_request,
    lab_script_mac,
    request_tags,
    response_f55,
)
from posp.crypto.des import adjust_odd_parity
from posp.crypto.emv import CardKeys, Scheme, ac_data, pan_psn_block
from posp.hsm.kq import KqResult, build_kq, parse_kq
from posp.iso8583.tlv import (
    F55,
    ONLINE_REQUEST_TAGS,
    F55Use,
    build_f55,
    decode_f55,
    first_missing_tag,
)
from terminals.chip import (
    CID_AAC,
    CID_TC,
    ChipCard,
    ChipCardRecord,
    TerminalChipData,
)
from tests.hsm_engine.conftest import lmk_encrypt

IMK_AC = adjust_odd_parity(bytes.fromhex("F0C34A8124CEE0A91A0B034AA97D6EAC"))
IMK_SMI = adjust_odd_parity(bytes(range(16, 32)))
RECORD = ChipCardRecord("6228000100001", "01", IMK_AC, IMK_SMI, atc=0x023F)
TERMINAL = TerminalChipData(amount_minor=1, date_yymmdd="140701", un=bytes.fromhex("1E78EEBC"))


class Issuer:
    """The issuer helper over an in-process engine, as the authoriser will use it."""

    def __init__(self) -> None:
        self.engine = HsmEngine()
        self.mk_ac = lmk_encrypt("109", IMK_AC, "U")

    def kq(self, f55: bytes, arc: bytes = b"00") -> tuple[KqResult, bytes]:
        tags = request_tags(f55)
        request = kq_request(tags, pan=RECORD.pan, psn=RECORD.psn, mk_ac=self.mk_ac, arc=arc)
        reply = self.engine.handle(b"0001" + build_kq(request))
        return parse_kq(reply[4:], request.mode), tags.values()["9F26"]


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def test_first_generate_ac_counts_the_atc_and_sends_section_8_tags_in_order() -> None:
    """F55 holds §8's tags in §8's order with ATC = stored ATC + 1 and CID 80 (ARQC)."""
    card = ChipCard(RECORD)
    f55 = decode_f55(card.first_generate_ac(TERMINAL))
    assert f55.tags() == ONLINE_REQUEST_TAGS
    assert f55.get("9F36") == bytes.fromhex("0240") and card.atc == 0x0240
    assert f55.get("9F27") == b"\x80"
    assert f55.get("9F10")[2] == 0x01  # type: ignore[index]  # cryptogram version 01
    assert first_missing_tag(f55, F55Use.PURCHASE) is None
    assert decode_f55(card.first_generate_ac(TERMINAL)).get("9F36") == bytes.fromhex("0241")


def test_approved_arqc_verifies_and_the_card_answers_a_tc(issuer: Issuer) -> None:
    """Genuine ARQC → KQ verified, tag 91 ARPC ‖ 3030; the card checks it and gives a TC
    whose upload F55 carries the TC in 9F26 with CID 40."""
    card = ChipCard(RECORD)
    result, _ = issuer.kq(card.first_generate_ac(TERMINAL))
    assert result.verified
    answer = response_f55(result, b"00")
    assert answer is not None and decode_f55(answer).get("91") == result.arpc + b"00"
    second = card.second_generate_ac(answer, b"00")
    assert second.arpc_ok and second.approved and second.cid == CID_TC
    upload = decode_f55(second.f55)
    assert upload.get("9F26") == second.cryptogram and upload.get("9F27") == b"\x40"
    assert first_missing_tag(upload, F55Use.TC_UPLOAD) is None


def test_a_tampered_amount_fails_kq_and_gets_no_tag_91(issuer: Issuer) -> None:
    """9F02 changed after the ARQC: KQ answers 01, response_f55 is None, the card AACs."""
    card = ChipCard(RECORD)
    f55 = decode_f55(card.first_generate_ac(TERMINAL))
    forged = build_f55(
        (item.tag, bytes.fromhex("000000009999") if item.tag == "9F02" else item.value)
        for item in f55
    )
    result, _ = issuer.kq(forged)
    assert result == KqResult(False, None)
    assert response_f55(result, b"00") is None
    second = card.second_generate_ac(None, b"05")
    assert second.cid == CID_AAC and not second.arpc_ok


def test_a_wrong_arpc_makes_the_card_decline_an_approved_transaction(issuer: Issuer) -> None:
    """Tag 91 with a flipped ARPC bit: approved by the host, AAC from the card."""
    card = ChipCard(RECORD)
    result, _ = issuer.kq(card.first_generate_ac(TERMINAL))
    assert result.arpc is not None
    bad = response_f55(replace(result, arpc=bytes([result.arpc[0] ^ 1]) + result.arpc[1:]), b"00")
    second = card.second_generate_ac(bad, b"00")
    assert not second.arpc_ok and second.cid == CID_AAC
    assert decode_f55(second.f55).get("9F27") == b"\x00"


def test_a_host_decline_with_a_good_arpc_is_an_aac(issuer: Issuer) -> None:
    """ARC 51 (insufficient funds) with its genuine ARPC: issuer authenticated, AAC."""
    card = ChipCard(RECORD)
    result, _ = issuer.kq(card.first_generate_ac(TERMINAL), arc=b"51")
    second = card.second_generate_ac(response_f55(result, b"51"), b"51")
    assert second.arpc_ok and second.cid == CID_AAC


def test_issuer_scripts_with_good_macs_run_and_a_bad_mac_is_reported(issuer: Issuer) -> None:
    """A 71 PIN-unblock and a 72 limit update with lab MACs run (DF31 20 + id); a 72 whose
    second command's MAC is wrong reports 12 + id."""
    card = ChipCard(RECORD)
    f55 = card.first_generate_ac(TERMINAL)
    result, arqc = issuer.kq(f55)
    atc = decode_f55(f55).get("9F36") or b""
    mac = lab_script_mac(IMK_SMI, RECORD.pan, RECORD.psn, atc, arqc)
    unblock = issuer_script("71", b"\x00\x00\x00\x01", [(PIN_UNBLOCK, b"")], mac)
    limit = issuer_script(
        "72", b"\x00\x00\x00\x02", [(PUT_DATA + b"\x9f\x79", bytes.fromhex("000000100000"))], mac
    )

    def broken(header: bytes, data: bytes) -> bytes:
        return bytes(4) if data else mac(header, data)

    bad = issuer_script(
        "72", b"\x00\x00\x00\x03", [(PIN_UNBLOCK, b""), (PUT_DATA + b"\x9f\x79", b"\x01")], broken
    )
    answer = response_f55(result, b"00", [unblock, limit, bad])
    second = card.second_generate_ac(answer, b"00")
    assert second.approved
    assert second.script_results == bytes.fromhex("200000000120000000021200000003")


def test_garbage_response_f55_is_no_issuer_authentication() -> None:
    """A response F55 that does not decode gives an AAC, not an exception."""
    card = ChipCard(RECORD)
    card.first_generate_ac(TERMINAL)
    assert card.second_generate_ac(b"\x9f", b"00").cid == CID_AAC


def test_request_tags_name_the_missing_tag_and_bad_f55() -> None:
    """No 9F10 → ChipDataError naming 9F10; undecodable F55 → ChipDataError (offset)."""
    full = decode_f55(ChipCard(RECORD).first_generate_ac(TERMINAL))
    without = build_f55((item.tag, item.value) for item in full if item.tag != "9F10")
    with pytest.raises(ChipDataError) as caught:
        request_tags(without)
    assert caught.value.tag == "9F10"
    with pytest.raises(ChipDataError, match="offset 0"):
        request_tags(b"\x9f")


def test_unsupported_cryptogram_version_is_refused(issuer: Issuer) -> None:
    """9F10 with cryptogram version 0A: ChipDataError naming 9F10, no KQ is built."""
    f55 = decode_f55(ChipCard(RECORD).first_generate_ac(TERMINAL))
    other = build_f55(
        (item.tag, b"\x07\x00\x0a\x03\xa0\x00\x00" if item.tag == "9F10" else item.value)
        for item in f55
    )
    with pytest.raises(ChipDataError, match="version 0A"):
        kq_request(decode_f55(other), pan=RECORD.pan, psn="01", mk_ac=issuer.mk_ac, arc=b"00")


def test_second_generate_ac_without_a_first_is_a_programming_error() -> None:
    """The card refuses a second GENERATE AC it was not asked the first for."""
    with pytest.raises(RuntimeError):
        ChipCard(RECORD).second_generate_ac(None, b"00")


@pytest.mark.parametrize(
    ("change", "tag", "reason"),
    [
        ({"9F37": None}, "9F37", "lacks tag 9F37"),
        ({"9F10": b"\x07\x00"}, "9F10", "too short"),
        ({"9F36": b"\x01"}, "9F36", "must be 2 bytes"),
        ({"9F26": bytes(4)}, "9F26", "must be 8 bytes"),
    ],
)
def test_kq_request_names_the_unusable_tag(
    issuer: Issuer, change: dict[str, bytes | None], tag: str, reason: str
) -> None:
    """A missing or mis-sized tag in an unchecked F55 raises ChipDataError naming it."""
    f55 = decode_f55(ChipCard(RECORD).first_generate_ac(TERMINAL))
    pairs = [(t, change.get(t, v)) for t, v in f55.values().items()]
    edited = decode_f55(build_f55((t, v) for t, v in pairs if v is not None))
    with pytest.raises(ChipDataError, match=reason) as caught:
        kq_request(edited, pan=RECORD.pan, psn="01", mk_ac=issuer.mk_ac, arc=b"00")
    assert caught.value.tag == tag


def test_kq_request_refuses_a_bad_card_sequence_number(issuer: Issuer) -> None:
    """A PSN that is not two digits raises ChipDataError without a tag."""
    f55 = decode_f55(ChipCard(RECORD).first_generate_ac(TERMINAL))
    with pytest.raises(ChipDataError) as caught:
        kq_request(f55, pan=RECORD.pan, psn="1", mk_ac=issuer.mk_ac, arc=b"00")
    assert caught.value.tag is None


def test_atc_freshness_declines_replays_and_lower_atcs() -> None:
    """The card's next ATC is fresh; the same F55 again, or an older one, is not."""
    card = ChipCard(RECORD)
    first = decode_f55(card.first_generate_ac(TERMINAL))
    second = decode_f55(card.first_generate_ac(TERMINAL))
    assert atc_is_fresh(None, first)
    assert atc_is_fresh(0x0240, second)
    assert not atc_is_fresh(0x0241, second)  # replayed
    assert not atc_is_fresh(0x0241, first)  # lower
    assert not atc_is_fresh(None, F55())  # no 9F36 at all


def test_script_advice_f55_carries_df31_first(issuer: Issuer) -> None:
    """advice_f55: DF31 with the script results, then 9F26 9F27 9F36; the advice use's
    mandatory tag (DF31) is present."""
    card = ChipCard(RECORD)
    f55 = card.first_generate_ac(TERMINAL)
    result, arqc = issuer.kq(f55)
    mac = lab_script_mac(IMK_SMI, RECORD.pan, RECORD.psn, bytes.fromhex("0240"), arqc)
    script = issuer_script("72", b"\x00\x00\x00\x09", [(PIN_UNBLOCK, b"")], mac)
    second = card.second_generate_ac(response_f55(result, b"00", [script]), b"00")
    advice = decode_f55(second.advice_f55())
    assert advice.tags() == ("DF31", "9F26", "9F27", "9F36")
    assert advice.get("DF31") == bytes.fromhex("2000000009")
    assert first_missing_tag(advice, F55Use.SCRIPT_ADVICE) is None


@pytest.mark.parametrize(("arc", "corrupt"), [(b"00", False), (b"00", True), (b"51", False)])
def test_second_cryptogram_is_the_mac_of_its_own_f55(
    issuer: Issuer, arc: bytes, corrupt: bool
) -> None:
    """TC / AAC = the AC under the card's session key over ac_data() of the F55 the
    card hands back (its 9F10 CVR included), the ARQC likewise over the request's."""
    card = ChipCard(RECORD)
    request = card.first_generate_ac(TERMINAL)
    result, _ = issuer.kq(request, arc=arc)
    answer = None if corrupt else response_f55(result, arc)
    second = card.second_generate_ac(answer, arc)
    for f55, cryptogram in ((request, None), (second.f55, second.cryptogram)):
        tags = decode_f55(f55).values()
        keys = CardKeys.derive(
            IMK_AC, pan_psn_block(RECORD.pan, RECORD.psn), Scheme.PBOC_V01, tags["9F36"]
        )
        assert keys.cryptogram(ac_data(tags)) == (cryptogram or tags["9F26"])
    assert decode_f55(second.f55).tags() == ONLINE_REQUEST_TAGS
    assert decode_f55(second.f55).get("9F26") == second.cryptogram
