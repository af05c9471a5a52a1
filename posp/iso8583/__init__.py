"""Pure ISO 8583 codec: the terminal-link and network-link dialects.

Field specifications are data (``posp.iso8583.spec``), compiled once into
per-field codec closures; ``Message`` renders masked; decoding raises only
``posp.errors.DecodeError`` subclasses that name the field and offset, never
the value.  Sub-field helpers live in ``posp.iso8583.fields``.
"""

from posp.iso8583.dialect import Dialect
from posp.iso8583.message import Mask, Message, mask_pan
from posp.iso8583.network import (
    NETWORK,
    NETWORK_FIELDS,
    EncodedNetworkMessage,
    NetworkDecodeError,
    NetworkFrame,
    NetworkHeader,
    decode_network,
    encode_network,
    is_key_exchange,
    network_mab,
)
from posp.iso8583.spec import Align, FieldSpec, Fmt, Wire
from posp.iso8583.terminal import (
    TERMINAL,
    TERMINAL_FIELDS,
    TerminalDecodeError,
    TerminalFrame,
    decode_terminal,
    encode_terminal,
    reply_tpdu,
    response_header,
    terminal_mab,
)

__all__ = [
    "NETWORK",
    "NETWORK_FIELDS",
    "TERMINAL",
    "TERMINAL_FIELDS",
    "Align",
    "Dialect",
    "EncodedNetworkMessage",
    "FieldSpec",
    "Fmt",
    "Mask",
    "Message",
    "NetworkDecodeError",
    "NetworkFrame",
    "NetworkHeader",
    "TerminalDecodeError",
    "TerminalFrame",
    "Wire",
    "decode_network",
    "decode_terminal",
    "encode_network",
    "encode_terminal",
    "is_key_exchange",
    "mask_pan",
    "network_mab",
    "reply_tpdu",
    "response_header",
    "terminal_mab",
]
