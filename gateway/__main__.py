"""`python -m gateway`: the `mailgw` command line."""

from gateway.commands.cli import main

raise SystemExit(main())
