"""Go Micro's JSON broker envelope, ``{"Header": {...}, "Body": "<base64>"}``.

Go's http and nats brokers both carry a message as ``json.Marshal(&broker.Message{Header, Body})``
(``map[string]string`` and ``[]byte``, so Body is base64); the http broker POSTs it, the nats broker
publishes it as the payload. Pure functions, shared by :mod:`._http_proto` and :mod:`.nats`.
"""

from __future__ import annotations

import base64
import binascii
import json

from ..errors import CodecError
from ._base import BrokerMessage

__all__ = ["decode_envelope", "encode_envelope"]


def encode_envelope(message: BrokerMessage) -> bytes:
    """``json.Marshal(&broker.Message{Header, Body})`` as Go writes it (compact, Body in base64)."""
    return json.dumps(
        {"Header": message.header, "Body": base64.b64encode(message.body).decode("ascii")},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_envelope(data: bytes) -> BrokerMessage:
    """Parse an envelope; CodecError says what is wrong. Keys match case-insensitively (as Go's
    encoding/json does), unknown keys are ignored, ``null`` Header/Body mean empty."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"broker envelope is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CodecError("broker envelope is not a JSON object")
    fields = {str(k).lower(): v for k, v in obj.items()}
    header = fields.get("header")
    body = fields.get("body")
    if header is None:
        header = {}
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        raise CodecError("broker envelope: Header is not a map of strings")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        try:
            raw = base64.b64decode(body.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecError(f"broker envelope: Body is not base64 ({exc})") from None
    else:
        raise CodecError("broker envelope: Body is not a base64 string")
    return BrokerMessage(header=dict(header), body=raw)
