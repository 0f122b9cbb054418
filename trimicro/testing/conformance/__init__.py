"""Conformance suites: one reusable set of pytest tests per pluggable interface.

A plugin author subclasses the suite for their interface and provides the fixture it names (an open
registry, broker, transport, codec or selector); pytest then runs every check of the contract against
their implementation::

    import pytest
    from trimicro.testing.conformance import RegistryConformance

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        async def registry(self):
            async with MyRegistry() as reg:
                yield reg

The suites are classes whose names do not start with ``Test``, so pytest collects only the subclasses.
They need pytest-trio (``trio_mode = true``, or mark the subclass ``pytest.mark.trio``) and, for the
codec suite, hypothesis. Each module's doc lists what it checks and the class attributes that tune it.
"""

from .broker import BrokerConformance as BrokerConformance
from .codec import CodecConformance as CodecConformance
from .registry import RegistryConformance as RegistryConformance
from .selector import SelectorConformance as SelectorConformance
from .transport import TransportConformance as TransportConformance

__all__ = [
    "BrokerConformance",
    "CodecConformance",
    "RegistryConformance",
    "SelectorConformance",
    "TransportConformance",
]
