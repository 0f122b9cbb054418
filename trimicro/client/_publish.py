"""``Client.publish``: encode a message and hand it to the broker with Go Micro's headers.

Headers, as Go Micro's ``client.Publish`` sets them: the caller's context metadata
(:func:`trimicro.metadata` / a handler's incoming metadata), then ``metadata=``, then
``Content-Type``, ``Micro-Topic`` and ``Micro-ID`` (a fresh UUID; Go spells it with a capital ``ID``
inside broker messages). The body is encoded by the codec for ``content_type``, default
``application/json`` (Go Micro v5's client default, and what a Go subscriber decodes into any type);
protobuf messages encode with either. A :class:`~trimicro.codec.Frame` is sent as its raw bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .._metadata import CONTENT_TYPE, MESSAGE_ID, MICRO_ID, MICRO_TOPIC, canonical
from ..broker import BrokerMessage
from ..codec import Frame, get_codec
from ..context import current_metadata
from ..errors import BrokerError, CodecError

__all__ = ["PUBLISH_CONTENT_TYPE", "publish"]

PUBLISH_CONTENT_TYPE = "application/json"


async def publish(
    client: Any,
    topic: str,
    message: Any,
    *,
    metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> None:
    """Publish ``message`` on ``topic`` through ``client.broker``. CodecError if it cannot be
    encoded; BrokerError if there is no broker or it refused the message."""
    if not topic:
        raise BrokerError("publish: empty topic")
    broker = client.broker
    if broker is None:
        raise BrokerError("this client has no broker: publish from a running Service (service.client)")
    from ..service import _LazyBroker

    if isinstance(broker, _LazyBroker):
        broker = await broker.get()
    ct = content_type or PUBLISH_CONTENT_TYPE
    if isinstance(message, Frame):
        body = message.data
    elif isinstance(message, bytes | bytearray) and ct == "application/octet-stream":
        body = bytes(message)
    else:
        try:
            body = get_codec(ct).encode(message)
        except CodecError:
            raise
        except Exception as exc:  # a codec meeting a type it cannot handle
            raise CodecError(
                f"publish {topic!r}: cannot encode {type(message).__name__} as {ct}: {exc}"
            ) from exc
    header = current_metadata()
    if metadata:
        header.update({canonical(k): str(v) for k, v in metadata.items()})
    header[CONTENT_TYPE] = ct
    header[MICRO_TOPIC] = topic
    header[MESSAGE_ID] = str(uuid.uuid4())
    header.pop(MICRO_ID, None)
    await broker.publish(topic, BrokerMessage(header, body))
