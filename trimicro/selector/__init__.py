"""Client-side load balancing: strategies, filters and the caching selector."""

from ._base import Filter as Filter
from ._base import Next as Next
from ._base import Selector as Selector
from ._base import Strategy as Strategy
from ._outlier import OutlierDetector as OutlierDetector
from ._outlier import OutlierPolicy as OutlierPolicy
from ._outlier import is_node_failure as is_node_failure
from .cache import CachingSelector as CachingSelector
from .cache import RegistrySelector as RegistrySelector
from .cache import from_options as from_options
from .cache import strategy_from_name as strategy_from_name
from .filters import filter_endpoint as filter_endpoint
from .filters import filter_label as filter_label
from .filters import filter_version as filter_version
from .strategy import P2C as P2C
from .strategy import RoundRobin as RoundRobin
from .strategy import random_strategy as random_strategy
from .strategy import round_robin_strategy as round_robin_strategy
