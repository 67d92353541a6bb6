"""What every command module shares: CliError, the exit statuses, the type `register` receives."""

from __future__ import annotations

import argparse
from typing import TypeAlias

EXIT_FAILED_ROWS, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CliError(Exception):
    """A problem the operator must fix (settings, files); printed without a traceback."""


# What a command module's `register(commands)` receives: `parser.add_subparsers()`.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
