"""`wababind observe apply`: the observability/ definitions into an SLS project (the logic is in
wababind_local/observe.py and observability.py)."""

from __future__ import annotations

from wababind_local import observe
from wababind_local.cli.base import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "observe", help="create or update the SLS index, saved searches, dashboard and alerts"
    )
    observe.add_arguments(parser)
    parser.set_defaults(run=observe.run)
