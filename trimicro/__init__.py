"""trimicro: Go Micro, the microservices framework, rebuilt on Trio structured concurrency."""

from . import errors as errors
from ._plugins import register_plugin as register_plugin
from .config import Options as Options
from .config import load_options as load_options
from .errors import MicroError as MicroError

__version__ = "0.1.0"
