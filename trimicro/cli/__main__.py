from . import main

__all__: list[str] = []

raise SystemExit(main())
