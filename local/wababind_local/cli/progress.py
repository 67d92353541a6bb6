"""Bulk progress: a rich bar on a terminal, a plain line every 5% or 2 s otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class PlainProgress:
    """For logs and pipes: a line every 5% or 2 seconds, with rate and ETA."""

    def __init__(self, total: int, out: IO[str]):
        self.total, self.done, self.out = total, 0, out
        self.started = self.last = time.monotonic()
        self.step = max(1, total // 20)

    def advance(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        now = time.monotonic()
        crossed = self.done // self.step > before // self.step
        if crossed or now - self.last >= 2 or self.done == self.total:
            self.last = now
            rate, eta = rate_and_eta(self.done, self.total, now - self.started)
            print(
                f"{self.done}/{self.total} rows  {rate:.1f} rows/s  "
                f"ETA {'-' if eta is None else f'{eta:.0f}s'}",
                file=self.out,
                flush=True,
            )

    def close(self) -> None:
        pass


def rate_and_eta(done: int, total: int, elapsed_s: float) -> tuple[float, float | None]:
    """Rows per second since the start, and seconds left at that rate (None: not known yet).

    Batches land many rows at once, so a short-window rate would jump; the whole run's is calm.
    """
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return rate, ((total - done) / rate if rate > 0 else None)


class RichProgress:
    """A bar with rows done, rows per second, time elapsed and the time left."""

    def __init__(self, total: int, console: Any):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                rate, _ = rate_and_eta(int(task.completed), int(task.total), task.elapsed or 0)
                return Text(f"{rate:.1f} rows/s" if task.completed else "- rows/s")

        class EtaColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                _, eta = rate_and_eta(int(task.completed), int(task.total), task.elapsed or 0)
                if eta is None:
                    return Text("ETA -:--:--")
                hours, rest = divmod(int(eta), 3600)
                return Text(f"ETA {hours}:{rest // 60:02d}:{rest % 60:02d}")

        self._progress = Progress(
            TextColumn("binding"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            console=console,
        )
        self._task = self._progress.add_task("bind", total=total)
        self._progress.start()

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()


def make_progress(total: int) -> Progress:
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        return RichProgress(total, console)
    return PlainProgress(total, sys.stderr)
