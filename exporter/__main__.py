"""``python -m exporter`` is the same as the ``nayax-ev-exporter`` console script."""

from exporter.cli import main

raise SystemExit(main())
