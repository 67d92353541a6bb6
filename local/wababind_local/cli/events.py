"""`wababind events [NAME]`: the sample event of each trigger format."""

from __future__ import annotations

import argparse
from pathlib import Path

from wababind_local.cli.base import CliError, Commands
from wababind_local.fc_emulator import (
    ROOT,
)


def cmd_events(args: argparse.Namespace) -> int:
    folder = Path(args.events_dir)
    files = sorted(folder.glob("*.json"))
    if args.name:
        wanted = args.name if args.name.endswith(".json") else f"{args.name}.json"
        files = [f for f in files if f.name == wanted]
        if not files:
            raise CliError(f"no sample event {wanted} in {folder}")
    for path in files:
        if args.list:
            print(path.name)
        else:
            print(f"# {path.name}")
            print(path.read_text(encoding="utf-8").rstrip())
    return 0


def register(commands: Commands) -> None:
    events = commands.add_parser("events", help="print the sample event of each trigger format")
    events.add_argument("name", nargs="?", metavar="NAME")
    events.add_argument("--list", action="store_true", help="names only")
    events.add_argument("--events-dir", default=str(ROOT / "events"))
    events.set_defaults(run=cmd_events)
