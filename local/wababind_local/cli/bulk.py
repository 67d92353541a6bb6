"""`wababind bulk FILE --out OUT`: bind every row in batches; resumable, Ctrl-C safe."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wababind_local.cli.base import EXIT_FAILED_ROWS, EXIT_INTERRUPTED, CliError, Commands
from wababind_local.cli.outcomes import OutcomeFile, local_outcome
from wababind_local.cli.progress import Progress, make_progress
from wababind_local.cli.remote import InvokeFailed, Remote, _remote_flags, invoke, remote_from
from wababind_local.cli.rows import Row, read_rows

BATCH_RETRIES = 3
BACKOFF_BASE_S = 0.5


class Interrupted(Exception):
    """The run stopped early; every outcome line written so far is whole and flushed."""

    def __init__(self, reason: str, *, at_once: bool):
        super().__init__(reason)
        self.at_once = at_once


@dataclass
class Bulk:
    """Send pending rows in batches; write each outcome the moment it is known.

    `stop` set (the first Ctrl-C) sends no further batch and waits for those under way;
    `stop_after` ends the run at once after that many outcome lines, as a crash would.
    """

    remote: Remote
    out: OutcomeFile
    batch_size: int = 50
    concurrency: int = 2
    retries: int = BATCH_RETRIES
    backoff_s: float = BACKOFF_BASE_S
    stop: threading.Event = field(default_factory=threading.Event)
    stop_after: int | None = None

    def run(self, rows: Sequence[Row], progress: Progress) -> list[dict[str, Any]]:
        written: list[dict[str, Any]] = []

        def record(row: Row, outcome: dict[str, Any]) -> None:
            written.append(self.out.write(row, outcome))
            progress.advance()
            if self.stop_after is not None and len(written) >= self.stop_after:
                raise Interrupted(f"stopped after {len(written)} outcomes", at_once=True)

        for row in rows:
            if row.problem is not None:
                record(row, local_outcome(row, "InvalidRow", row.problem, False))
        sendable = [r for r in rows if r.problem is None]
        batches = [
            sendable[i : i + self.batch_size] for i in range(0, len(sendable), self.batch_size)
        ]
        pool = ThreadPoolExecutor(self.concurrency, "bulk")
        futures: set[Future[list[tuple[Row, dict[str, Any]]]]] = {
            pool.submit(self.send, batch) for batch in batches
        }
        draining = False
        try:
            while futures:
                if self.stop.is_set() and not draining:
                    draining = True
                    futures = {f for f in futures if not f.cancel()}
                    print(
                        f"\nstopping: waiting for the {len(futures)} batch(es) under way "
                        "(Ctrl-C again stops at once)",
                        file=sys.stderr,
                        flush=True,
                    )
                finished, futures = wait(futures, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in finished:
                    for row, outcome in future.result():
                        record(row, outcome)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if self.stop.is_set():
            raise Interrupted("interrupted", at_once=False)
        return written

    def send(self, batch: list[Row]) -> list[tuple[Row, dict[str, Any]]]:
        """One batch; re-sent while the function raises (bound rows then answer duplicate)."""
        last: InvokeFailed | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._outcomes(batch)
            except InvokeFailed as exc:
                if not exc.retryable:
                    raise
                last = exc
        assert last is not None
        if len(batch) == 1:
            return [(batch[0], local_outcome(batch[0], last.code, last.message, True))]
        return [pair for row in batch for pair in self._single(row)]

    def _single(self, row: Row) -> list[tuple[Row, dict[str, Any]]]:
        try:
            return self._outcomes([row])
        except InvokeFailed as exc:
            if not exc.retryable:
                raise
            return [(row, local_outcome(row, exc.code, exc.message, True))]

    def _outcomes(self, batch: list[Row]) -> list[tuple[Row, dict[str, Any]]]:
        answer = invoke(self.remote, [row.request for row in batch])
        outcomes = answer.get("Outcomes") if isinstance(answer, dict) else None
        if not isinstance(outcomes, list) or len(outcomes) != len(batch):
            raise InvokeFailed("BadAnswer", "the summary has no outcome per request", False)
        return list(zip(batch, outcomes, strict=True))


def cmd_bulk(args: argparse.Namespace) -> int:
    remote = remote_from(args)
    rows = read_rows(Path(args.file))
    if max(Counter(r.key for r in rows).values(), default=1) > 1:
        raise CliError("two rows share a key (line number + WabaId); the file is malformed")
    out = OutcomeFile(Path(args.out))
    pending = [r for r in rows if r.key not in out.done]
    print(
        f"{len(rows)} rows in {args.file}; {len(rows) - len(pending)} already done in "
        f"{args.out}; sending {len(pending)} to {remote.function} at {remote.endpoint}",
        file=sys.stderr,
        flush=True,
    )
    bulk = Bulk(
        remote,
        out,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        stop_after=args.stop_after,
    )
    progress = make_progress(len(pending))
    try:
        with _stopping_on_signals(bulk.stop):
            written = bulk.run(pending, progress)
    except (Interrupted, KeyboardInterrupt) as exc:
        at_once = not isinstance(exc, Interrupted) or exc.at_once
        reason = exc if isinstance(exc, Interrupted) else "interrupted"
        out.lock.acquire()  # no line is written after this point
        progress.close()
        print(
            f"\n{reason}: every outcome so far is in {args.out}; "
            "run the same command again to resume",
            file=sys.stderr,
            flush=True,
        )
        if at_once:
            os._exit(EXIT_INTERRUPTED)  # batches still under way are not waited for
        out.lock.release()
        out.close()
        return EXIT_INTERRUPTED
    progress.close()
    out.close()
    latest = {**out.done, **{record["Row"]: record for record in written}}
    return summarize([latest.get(row.key, {}) for row in rows], Path(args.out))


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) sets `stop`; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def summarize(records: Sequence[dict[str, Any]], path: Path) -> int:
    """One line of counts; exit status 1 when any row ended failed."""
    statuses = Counter(r.get("Status") for r in records)
    retryable = sum(1 for r in records if r.get("Status") == "failed" and r.get("Retryable"))
    again = f" ({retryable} retryable: run again to retry them)" if retryable else ""
    print(
        f"{len(records)} rows: {statuses['bound']} bound, {statuses['duplicate']} duplicate, "
        f"{statuses['failed']} failed{again} → {path}"
    )
    return EXIT_FAILED_ROWS if statuses["failed"] else 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"wants a whole number of at least 1, not {text!r}")
    return value


def register(commands: Commands) -> None:
    bulk = commands.add_parser("bulk", help="bind every row of a CSV or JSONL file; resumable")
    bulk.add_argument("file", metavar="FILE")
    bulk.add_argument("--out", required=True, help="outcome file (JSONL); read back to resume")
    bulk.add_argument("--batch-size", type=_positive, default=50, help="rows per invocation")
    bulk.add_argument("--concurrency", type=_positive, default=2, help="batches under way at once")
    bulk.add_argument(
        "--stop-after",
        type=_positive,
        metavar="N",
        help="stop at once after N outcomes, as a crash would (to rehearse a resume)",
    )
    _remote_flags(bulk)
    bulk.set_defaults(run=cmd_bulk)
