"""A trimicro registry in a directory shared by the processes of one machine (``--registry file``).

Installed, it is found through its entry point in the ``trimicro.registry`` group (see pyproject.toml);
nothing in trimicro names it. See README.md.
"""

from ._registry import DEFAULT_DIRECTORY as DEFAULT_DIRECTORY
from ._registry import FileRegistry as FileRegistry
from ._registry import FileWatcher as FileWatcher
from ._registry import from_options as from_options

__all__ = ["DEFAULT_DIRECTORY", "FileRegistry", "FileWatcher", "from_options"]
