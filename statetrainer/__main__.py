"""``python -m statetrainer`` is the ``statetrainer`` command."""

from statetrainer.cli import main

raise SystemExit(main())
