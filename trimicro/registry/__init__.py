"""Service discovery: the :class:`Registry` contract, Go Micro's record types and implementations."""

from ._base import Registry as Registry
from ._base import Watcher as Watcher
from ._model import Endpoint as Endpoint
from ._model import Node as Node
from ._model import Result as Result
from ._model import Service as Service
from ._model import Value as Value
from .memory import MemoryRegistry as MemoryRegistry
