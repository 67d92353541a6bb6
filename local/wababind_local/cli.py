"""`wababind`: the operators' command line — bind, bulk onboarding, signing, simulator, events.

Remote commands call the MQ function through Function Compute's invoke API with the `fc2`
client, exactly as production does; against `make serve` they need no setting at all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from wababind_local.fc_emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    LOCAL_WEBHOOK_SECRET,
    ROOT,
    load_project,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
DEFAULT_FUNCTION = "bind-waba-mq"
REQUEST_FIELDS = ("WabaId", "Reference", "CallbackUrl")
BATCH_RETRIES = 3
BACKOFF_BASE_S = 0.5
EXIT_FAILED_ROWS, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CliError(Exception):
    """A problem the operator must fix (settings, files); printed without a traceback."""


# --- calling the function --------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """Where the MQ function is and the AccessKey that may invoke it."""

    endpoint: str
    access_key_id: str
    access_key_secret: str
    security_token: str
    service: str
    function: str
    timeout_s: float

    def client(self) -> Any:
        import fc2

        return fc2.Client(
            endpoint=self.endpoint,
            accessKeyID=self.access_key_id,
            accessKeySecret=self.access_key_secret,
            securityToken=self.security_token,
            Timeout=self.timeout_s,
        )


class InvokeFailed(Exception):
    """An invocation that gave no result; `retryable` when a later try may succeed."""

    def __init__(self, code: str, message: str, retryable: bool):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retryable = code, message, retryable


def _is_loopback(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")


def remote_from(args: argparse.Namespace) -> Remote:
    """Flags, then the environment. A loopback endpoint is `make serve`: its key is the local
    one (WABABIND_LOCAL_FC_KEY_ID/_SECRET, else the built-in dev key), never your cloud key."""
    endpoint = args.endpoint or os.environ.get("FC_ENDPOINT") or DEFAULT_ENDPOINT
    env = os.environ
    if _is_loopback(endpoint):
        env_id, env_secret, token = "WABABIND_LOCAL_FC_KEY_ID", "WABABIND_LOCAL_FC_KEY_SECRET", ""
        default_id, default_secret = LOCAL_FC_KEY_ID, LOCAL_FC_KEY_SECRET
    else:
        env_id, env_secret = "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")
        default_id = default_secret = ""
    key_id = args.access_key_id or env.get(env_id) or default_id
    secret = args.access_key_secret or env.get(env_secret) or default_secret
    if not key_id or not secret:
        raise CliError(
            "no AccessKey: set --access-key-id/--access-key-secret or "
            "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        )
    service, timeout_s = args.service, 660.0
    s_yaml = Path(args.s_yaml)
    if s_yaml.is_file():
        project = load_project(s_yaml)
        service = service or project.name
        spec = project.functions.get(args.function)
        timeout_s = float(spec.timeout + 60) if spec else timeout_s
    return Remote(
        endpoint=endpoint,
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        service=service or "wababind",
        function=args.function,
        timeout_s=timeout_s,
    )


def invoke(remote: Remote, payload: Any) -> Any:
    """A synchronous invoke; the function's JSON answer, or InvokeFailed."""
    import fc2
    import requests

    body = json.dumps(payload, ensure_ascii=False).encode()
    try:
        response = remote.client().invoke_function(remote.service, remote.function, payload=body)
    except fc2.fc_exceptions.FcError as exc:
        raise _invoke_error(exc) from None
    except requests.RequestException as exc:
        raise InvokeFailed(
            "Unreachable", f"{remote.endpoint}: {type(exc).__name__}", True
        ) from None
    try:
        return json.loads(response.data)
    except ValueError:
        raise InvokeFailed("BadAnswer", "the function did not answer JSON", False) from None


def _invoke_error(exc: Any) -> InvokeFailed:
    try:
        detail = json.loads(exc.message)
    except (TypeError, ValueError):
        detail = {}
    status = int(exc.status_code or 0)
    if status < 400:  # the function raised: FC answered 200 with x-fc-error-type
        return InvokeFailed(
            str(detail.get("errorType") or "UnhandledInvocationError"),
            str(detail.get("errorMessage") or ""),
            True,
        )
    code = str(detail.get("ErrorCode") or exc.err_code or f"HTTP{status}")
    message = str(detail.get("ErrorMessage") or "")
    return InvokeFailed(code, f"{message} (HTTP {status})", status >= 500 or status == 429)


# --- rows and outcomes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One input row: its key (line number + WabaId) is written into its outcome line."""

    key: str
    request: dict[str, Any] | None
    problem: str | None = None


def read_rows(path: Path) -> list[Row]:
    """CSV with a header row (WabaId[,Reference,CallbackUrl]) or JSON Lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    first = text.lstrip()[:1]
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or first == "{":
        return list(_jsonl_rows(text))
    return list(_csv_rows(text))


def _pick(fields: dict[str, Any]) -> dict[str, Any]:
    by_lower = {str(k).strip().lower(): v for k, v in fields.items() if k is not None}
    picked: dict[str, Any] = {}
    for name in REQUEST_FIELDS:
        value = by_lower.get(name.lower())
        if isinstance(value, str):
            value = value.strip()
        if value not in (None, ""):
            picked[name] = value
    return picked


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text))
    if not any((f or "").strip().lower() == "wabaid" for f in reader.fieldnames or []):
        raise CliError("the CSV needs a header row with a WabaId column")
    for fields in reader:
        request = _pick(fields)
        if not any((v or "").strip() for v in fields.values() if isinstance(v, str)):
            continue
        yield Row(f"{reader.line_num}:{request.get('WabaId', '')}", request)


def _jsonl_rows(text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            yield Row(f"{number}:", None, "the line is not a JSON object")
            continue
        request = _pick(doc)
        yield Row(f"{number}:{request.get('WabaId', '')}", request)


def is_final(record: dict[str, Any]) -> bool:
    """Bound, duplicate or failed for good: a resume does not send the row again."""
    status = record.get("Status")
    return status in ("bound", "duplicate") or (status == "failed" and not record.get("Retryable"))


def local_outcome(row: Row, code: str, message: str, retryable: bool) -> dict[str, Any]:
    """An outcome record for a row the function gave none for (bad row, or still failing)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    request = row.request or {}
    return {
        "Kind": "WabaBindOutcome",
        "EventId": None,
        "Source": "direct",
        "WabaId": request.get("WabaId"),
        "Reference": request.get("Reference"),
        "Status": "failed",
        "CustSpaceId": None,
        "Code": code,
        "Message": message,
        "RequestId": None,
        "AccessDeniedDetail": None,
        "Retryable": retryable,
        "Attempts": 0,
        "StartedAt": now,
        "FinishedAt": now,
        "DurationMs": 0,
    }


class OutcomeFile:
    """Append-only JSON Lines, one `{"Row": key, ...outcome}` per line, flushed per line."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done = self._compact()
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def _compact(self) -> dict[str, dict[str, Any]]:
        """The final outcomes already written; the file is rewritten to hold only those."""
        if not self.path.exists():
            return {}
        latest: dict[str, dict[str, Any]] = {}
        lines = 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption
            if isinstance(record, dict) and isinstance(record.get("Row"), str):
                latest.pop(record["Row"], None)
                latest[record["Row"]] = record
        done = {key: r for key, r in latest.items() if is_final(r)}
        if len(done) != lines:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(_line(r) for r in done.values()), encoding="utf-8")
            os.replace(tmp, self.path)
        return done

    def write(self, row: Row, record: dict[str, Any]) -> dict[str, Any]:
        line = {"Row": row.key, **record}
        with self.lock:
            self._file.write(_line(line))
            self._file.flush()
        return line

    def close(self) -> None:
        with self.lock:
            self._file.close()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


# --- progress --------------------------------------------------------------------------------


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


# --- bulk ------------------------------------------------------------------------------------


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


# --- bind ------------------------------------------------------------------------------------


def bind_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"WabaId": args.waba_id}
    if args.reference:
        request["Reference"] = args.reference
    if args.callback_url:
        request["CallbackUrl"] = args.callback_url
    return request


def cmd_bind(args: argparse.Namespace) -> int:
    request = bind_request(args)
    if args.local:
        records = bind_locally(request, Path(args.s_yaml), args.function)
    else:
        try:
            answer = invoke(remote_from(args), request)
        except InvokeFailed as exc:
            print(f"the function failed: {exc}", file=sys.stderr)
            return EXIT_FAILED_ROWS
        records = answer.get("Outcomes", []) if isinstance(answer, dict) else []
    for record in records:
        print(json.dumps(record, ensure_ascii=False, indent=2))
    ok = records and all(r.get("Status") in ("bound", "duplicate") for r in records)
    return 0 if ok else EXIT_FAILED_ROWS


def bind_locally(request: dict[str, Any], s_yaml: Path, function: str) -> list[dict[str, Any]]:
    """The MQ handler in this process, configured from the environment; its logged outcomes."""
    from wababind_local.fc_context import FCContext, FunctionMeta

    code_root = ROOT / "functions" / "bind_waba"
    timeout, handler = 600, "index.mq_handler"
    if s_yaml.is_file():
        spec = load_project(s_yaml).functions.get(function)
        if spec is not None:
            code_root, timeout, handler = spec.code, spec.timeout, spec.handler
    if str(code_root) not in sys.path:
        sys.path.insert(0, str(code_root))
    import importlib

    module_name, _, attr = handler.rpartition(".")
    mq_handler = getattr(importlib.import_module(module_name), attr)
    context = FCContext(function=FunctionMeta(function, handler, 512, timeout))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        try:
            mq_handler(json.dumps(request).encode(), context)
        except Exception as exc:  # retryable failures raise; the outcome is still logged
            print(f"the handler raised {type(exc).__name__}: {exc}", file=sys.stderr)
    return list(_outcome_lines(captured.getvalue()))


def _outcome_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("Kind") == "WabaBindOutcome":
                    yield doc


# --- sign ------------------------------------------------------------------------------------


def signature_headers(secret: str, body: str, msg_id: str | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed now."""
    from standardwebhooks import Webhook

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def cmd_sign(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    if not secret.startswith("whsec_"):
        raise CliError("the secret must be a Standard Webhooks secret (whsec_…)")
    body = _body(args.body)
    try:
        headers = signature_headers(secret, body, args.id)
    except Exception as exc:  # a secret that is not base64
        raise CliError(f"cannot sign with that secret ({type(exc).__name__})") from None
    if args.curl:
        parts = ["curl", "-sS", "-X", "POST", args.curl, "-H", "Content-Type: application/json"]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-raw", body]
        print(shlex.join(parts))
    else:
        for name, value in headers.items():
            print(f"{name}: {value}")
    return 0


def _body(arg: str) -> str:
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@"):
        try:
            return Path(arg[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {arg[1:]}: {exc.strerror}") from None
    return arg


# --- simulate and events ---------------------------------------------------------------------


FAULT_FORMS = (
    "CODE (a documented CAMS error, e.g. Ram.PermissionDeny)",
    "success_false:CODE",
    "http_status:STATUS",
    "slow:SECONDS",
    "garbage",
    "drop",
)


def parse_fault(text: str) -> Any:
    """`KIND[:ARG][*TIMES]` → a simulator Fault; `*N` fires on the next N calls only."""
    from wababind_local import cams_simulator as cams

    spec, _, times_text = text.partition("*")
    kind, _, arg = spec.partition(":")
    doc: dict[str, Any] = {"kind": kind}
    if kind in cams.DOCUMENTED_ERRORS and not arg:
        doc = {"kind": "error", "code": kind}
    elif kind == "success_false" and arg:
        doc["code"] = arg
    elif kind == "http_status" and arg.isdigit():
        doc["status"] = int(arg)
    elif kind == "slow":
        try:
            doc["seconds"] = float(arg)
        except ValueError:
            raise CliError(f"{text!r}: slow:SECONDS wants a number of seconds") from None
    elif kind not in ("garbage", "drop") or arg:
        raise CliError(f"unknown fault {text!r}; one of: {', '.join(FAULT_FORMS)}, then *N")
    if times_text:
        if not times_text.isdigit():
            raise CliError(f"{text!r}: *N wants a whole number of calls")
        doc["times"] = int(times_text)
    try:
        return cams.Fault.from_dict(doc)
    except ValueError as exc:
        raise CliError(f"{text!r}: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from wababind_local import cams_simulator as cams

    faults: dict[str, Any] = {}
    for item in args.fault:
        waba_id, sep, spec = item.partition("=")
        if not sep or not waba_id.isdigit():
            raise CliError(f"--fault wants WABA_ID=FAULT, not {item!r}")
        faults[waba_id] = parse_fault(spec)
    default = parse_fault(args.default_fault) if args.default_fault else None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    sim = cams.CamsSimulator(
        host=args.host,
        port=args.port,
        qps=args.qps if args.qps > 0 else None,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        demo_faults=args.demo_faults,
    )
    try:
        sim.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    try:
        for waba_id, fault in faults.items():
            sim.set_fault(waba_id, fault)
        sim.set_default_fault(default)
        quota = f"{args.qps:g} calls/s per account" if args.qps > 0 else "no quota"
        print(f"CAMS simulator on {sim.endpoint}  ({quota}, latency {args.latency_ms:g} ms)")
        shown = {**(cams.DEMO_FAULTS if args.demo_faults else {}), **faults}
        for waba_id, fault in shown.items():
            print(f"  {waba_id}: {fault.description}")
        if default is not None:
            print(f"  every other WabaId: {default.description}")
        print("Point the functions at it (its AccessKey is a fixed local one):")
        key = "from wababind_local.cams_simulator import DEFAULT_KEY as k"
        print(f"  export CAMS_ENDPOINT={sim.endpoint}")
        print(f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={cams.DEFAULT_KEY.access_key_id}")
        print(
            "  export ALIBABA_CLOUD_ACCESS_KEY_SECRET="
            f"\"$(python -c '{key}; print(k.access_key_secret)')\""
        )
        print("Ctrl-C stops.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        sim.stop()
    calls = sim.count()
    print(f"stopped after {calls} ChatappBindWaba call{'s' if calls != 1 else ''}")
    return 0


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


# --- the parser ------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"wants a whole number of at least 1, not {text!r}")
    return value


def _remote_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help=f"FC endpoint (env FC_ENDPOINT; {DEFAULT_ENDPOINT})")
    parser.add_argument("--access-key-id", help="env ALIBABA_CLOUD_ACCESS_KEY_ID")
    parser.add_argument("--access-key-secret", help="env ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    parser.add_argument("--service", help="FC service (default: the s.yaml project name)")
    parser.add_argument("--function", default=DEFAULT_FUNCTION)
    parser.add_argument("--s-yaml", default=str(ROOT / "s.yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wababind", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bind = commands.add_parser("bind", help="bind one WABA through the function (or --local)")
    bind.add_argument("waba_id", metavar="WABA_ID")
    bind.add_argument("--reference")
    bind.add_argument("--callback-url")
    bind.add_argument("--local", action="store_true", help="call index.mq_handler in-process")
    _remote_flags(bind)
    bind.set_defaults(run=cmd_bind)

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

    sign = commands.add_parser("sign", help="Standard Webhooks headers for a body")
    sign.add_argument("body", metavar="BODY_OR_@FILE", help="the body, @file, or - for stdin")
    sign.add_argument("--secret", help="whsec_… (env WEBHOOK_SECRET; else the local dev one)")
    sign.add_argument("--id", help="webhook-id (default: a new msg_…)")
    sign.add_argument("--curl", metavar="URL", help="print a complete curl command instead")
    sign.set_defaults(run=cmd_sign)

    simulate = commands.add_parser(
        "simulate",
        help="run the CAMS simulator in the foreground, with chosen faults",
        description="FAULT is one of: " + "; ".join(FAULT_FORMS) + ". Add *N to fire it on "
        "the next N calls only (e.g. ServiceUnavailable*2).",
    )
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=9100, help="0 picks a free one")
    simulate.add_argument("--qps", type=float, default=10.0, help="per-account quota; 0 = none")
    simulate.add_argument("--latency-ms", type=float, default=0.0)
    simulate.add_argument("--jitter-ms", type=float, default=0.0)
    simulate.add_argument("--fault", action="append", default=[], metavar="WABA_ID=FAULT")
    simulate.add_argument("--default-fault", metavar="FAULT", help="for every other WabaId")
    simulate.add_argument("--demo-faults", action="store_true", help="the demo's fault WabaIds")
    simulate.set_defaults(run=cmd_simulate)

    events = commands.add_parser("events", help="print the sample event of each trigger format")
    events.add_argument("name", nargs="?", metavar="NAME")
    events.add_argument("--list", action="store_true", help="names only")
    events.add_argument("--events-dir", default=str(ROOT / "events"))
    events.set_defaults(run=cmd_events)
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


if __name__ == "__main__":
    sys.exit(main())
