"""The ``trimicro`` command: inspect and call services, as Go Micro's ``micro`` CLI does."""

from ._main import main as main

__all__ = [
    "main",
]
