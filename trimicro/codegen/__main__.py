"""``python -m trimicro.codegen``: the protoc plugin without its console script (see docs/codegen.md).

Preferred over ``-m trimicro.codegen.plugin``, which runpy warns about because the package's
``__init__`` already imported ``plugin``.
"""

from .plugin import main

main()
