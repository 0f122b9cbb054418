"""The Transport conformance suite (trimicro.testing.conformance) against the built-in transports.

The gRPC transport is left out: its client half dials HTTP/2 while ``listen`` hands the port to the
HTTP transport (one port, two protocols), so it cannot echo frames to itself through the contract;
tests/transport/test_h2*.py cover it against the gRPC server.
"""

from __future__ import annotations

import pytest

from trimicro.testing.conformance import TransportConformance
from trimicro.transport.http import HttpTransport
from trimicro.transport.memory import MemoryNetwork, MemoryTransport


@pytest.mark.loopback
class TestHttpTransport(TransportConformance):
    @pytest.fixture
    def transport(self) -> HttpTransport:
        return HttpTransport()


class TestMemoryTransport(TransportConformance):
    address = "memory:0"

    @pytest.fixture
    def transport(self) -> MemoryTransport:
        return MemoryTransport(network=MemoryNetwork())
