"""``python -m trunkline`` runs the command-line interface."""

from trunkline.cli import main

raise SystemExit(main())
