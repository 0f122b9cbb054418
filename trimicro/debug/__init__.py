"""Internal ``Debug`` endpoints every service answers (not advertised in the registry)."""

from ._handler import Debug as Debug
