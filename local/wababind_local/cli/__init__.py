"""`wababind`: the operators' command line — bind, bulk onboarding, signing, simulator, events,
the SLS dashboards and alerts (observe), reports on outcome records (report).

Remote commands call the MQ function through Function Compute's invoke API with the `fc2`
client, exactly as production does; against `make serve` they need no setting at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable

from wababind_local.cli import bind, bulk, events, observe, report, sign, simulate
from wababind_local.cli.base import (
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Commands,
)
from wababind_local.cli.bind import bind_locally, bind_request, cmd_bind
from wababind_local.cli.bulk import (
    BACKOFF_BASE_S,
    BATCH_RETRIES,
    Bulk,
    Interrupted,
    cmd_bulk,
    summarize,
)
from wababind_local.cli.events import cmd_events
from wababind_local.cli.outcomes import OutcomeFile, is_final, local_outcome
from wababind_local.cli.progress import (
    PlainProgress,
    Progress,
    RichProgress,
    make_progress,
    rate_and_eta,
)
from wababind_local.cli.remote import (
    DEFAULT_ENDPOINT,
    DEFAULT_FUNCTION,
    InvokeFailed,
    Remote,
    invoke,
    remote_from,
)
from wababind_local.cli.rows import REQUEST_FIELDS, Row, read_rows
from wababind_local.cli.sign import cmd_sign, signature_headers
from wababind_local.cli.simulate import FAULT_FORMS, cmd_simulate, parse_fault

# One module per command, each with `register(commands)`; the order here is the order in --help.
# A new command is a new module and one entry here.
COMMANDS = (bind, bulk, sign, simulate, events, observe, report)

__all__ = [
    "BACKOFF_BASE_S",
    "BATCH_RETRIES",
    "COMMANDS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_FUNCTION",
    "EXIT_FAILED_ROWS",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "FAULT_FORMS",
    "REQUEST_FIELDS",
    "Bulk",
    "CliError",
    "Commands",
    "Interrupted",
    "InvokeFailed",
    "OutcomeFile",
    "PlainProgress",
    "Progress",
    "Remote",
    "RichProgress",
    "Row",
    "bind_locally",
    "bind_request",
    "build_parser",
    "cmd_bind",
    "cmd_bulk",
    "cmd_events",
    "cmd_sign",
    "cmd_simulate",
    "invoke",
    "is_final",
    "local_outcome",
    "main",
    "make_progress",
    "parse_fault",
    "rate_and_eta",
    "read_rows",
    "remote_from",
    "signature_headers",
    "summarize",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wababind", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def _not_from_fc2(record: logging.LogRecord) -> bool:
    """fc2 logs each failed request, its signature included, on the root logger: drop those."""
    return f"{os.sep}fc2{os.sep}" not in record.pathname


def main(argv: Iterable[str] | None = None) -> int:
    root = logging.getLogger()
    if _not_from_fc2 not in root.filters:
        root.addFilter(_not_from_fc2)
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        code: int = args.run(args)
    except CliError as exc:
        print(f"wababind: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvokeFailed as exc:
        print(f"wababind: the invoke failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
