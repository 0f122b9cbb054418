"""Testing kit: serve services in-process, a recording broker, dependency replacement, real servers.

``async with trimicro.testing.serve(Greeter(), name="greeter") as client:`` runs the handlers as a
real service on memory plugins and yields a client bound to it; :class:`TestBroker` records publishes
and delivers to subscribers on demand; :func:`worker_factory` swaps a handler's dependencies; the
pytest plugin (``trimicro.testing.plugin``, loaded automatically once trimicro is installed) turns
these into fixtures, with real nats-server / etcd / ZooKeeper on loopback. Conformance suites for
plugin authors live in :mod:`trimicro.testing.conformance`.
"""

from ._broker import TestBroker as TestBroker
from ._broker import TestSubscription as TestSubscription
from ._deps import autospec as autospec
from ._deps import worker_factory as worker_factory
from ._serve import ServiceClient as ServiceClient
from ._serve import serve as serve
from ._world import World as World

__all__ = ["ServiceClient", "TestBroker", "TestSubscription", "World", "autospec", "serve", "worker_factory"]
