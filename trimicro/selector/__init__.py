"""Client-side load balancing: strategies, filters and the caching selector."""

from ._base import Filter as Filter
from ._base import Next as Next
from ._base import Selector as Selector
from ._base import Strategy as Strategy
