"""The JSON decoders of the nats registry, the nats transport and natsjs events take bytes from any
NATS publisher: whatever arrives, they return a value or raise their one typed error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro.errors import ProtocolError
from trimicro.events import EventsError, decode_event
from trimicro.registry.nats import _decode_service, decode_result
from trimicro.transport.nats import decode_frame

_json: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(["Header", "Body", "Service", "Action", "ID", "Topic", "Timestamp", "Metadata",
                         "Payload", "name", "nodes", "version", "endpoints", "metadata", "x"])  # fmt: skip
_objects = st.dictionaries(_keys, _json, max_size=6)
_payloads = (
    st.binary(max_size=200)
    | _objects.map(lambda o: json.dumps(o).encode())
    | _json.map(lambda o: json.dumps(o).encode())
)


@settings(max_examples=300, deadline=None)
@given(_payloads)
def test_decoders_raise_only_their_typed_errors(data: bytes) -> None:
    try:
        decode_frame(data)
    except ProtocolError:
        pass
    try:
        decode_result(data)
    except ValueError:
        pass
    try:
        decode_event(data)
    except EventsError:
        pass
    _decode_service(data)  # None when not a Service: never raises
