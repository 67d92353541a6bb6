"""FcEmulator, the behaviour: run s.yaml's handlers in this process, sync or async, as FC does.

Each function is one instance here: its `instanceLifecycleConfig.initializer` runs once, before
its first invocation (a failed one fails that invocation and is tried again on the next), and
its `preStop` runs when the emulator stops (FC docs, "Lifecycle hooks for function instances").
"""

from __future__ import annotations

import base64
import email.utils
import hmac
import importlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from wababind_local.fc_context import (
    Credentials,
    FCContext,
    FCContext312,
    FunctionMeta,
    FunctionMeta312,
    ServiceMeta,
)
from wababind_local.fc_emulator.fc_api import (
    INVOKE_PATH,
    MAX_ASYNC_PAYLOAD,
    MAX_SKEW_S,
    MAX_SYNC_PAYLOAD,
    UNHANDLED,
    FunctionTimeout,
    Reply,
    _error_body,
    _output,
    fc_error,
    sign,
)
from wababind_local.fc_emulator.http_trigger import _Request, http_reply, http_trigger_event
from wababind_local.fc_emulator.project import ROOT, FunctionSpec, load_project
from wababind_local.fc_emulator.server import _RequestHandler, _Server

# Local-only defaults: `make serve`, the README examples and the CLI use them when nothing is set.
LOCAL_FC_KEY_ID = "LocalFcAccessKeyId"
LOCAL_FC_KEY_SECRET = "LocalFcAccessKeySecret"  # a well-known local dev value
LOCAL_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"wababind-local-dev-webhook-key!!").decode()
# s.yaml values that describe FC's file layout, not this process.
SKIPPED_ENV = frozenset({"PYTHONPATH"})

Handler = Callable[[bytes, Any], Any]


class FcEmulator:
    """The functions of one s.yaml, served over FC's invoke API and an HTTP trigger."""

    def __init__(
        self,
        *,
        s_yaml: Path = ROOT / "s.yaml",
        access_key_id: str = LOCAL_FC_KEY_ID,
        access_key_secret: str = LOCAL_FC_KEY_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        env: Mapping[str, str] | None = None,
        code_root: Path | None = None,
        timeout_s: float | None = None,
        account_id: str = "1234567890123456",
        async_workers: int = 8,
        async_retry_base_s: float = 1.0,
        verbose: bool = False,
    ):
        self.project = load_project(s_yaml)
        if not self.project.functions:
            raise ValueError(f"{s_yaml} declares no function")
        self._key = (access_key_id, access_key_secret)
        self._address = (host, port)
        self._overrides = dict(env or {})
        self._code_root = code_root
        self._timeout_s = timeout_s
        self._account_id = account_id
        self._async_workers = async_workers
        self._retry_base_s = async_retry_base_s
        self._verbose = verbose
        self._handlers: dict[str, Handler] = {}
        self._saved_env: dict[str, str | None] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._initialized: set[str] = set()  # functions whose instance ran its initializer
        self._init_locks = {name: threading.Lock() for name in self.project.functions}

    # lifecycle

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def environment(self) -> dict[str, str]:
        """The functions' environment: every function's s.yaml variables, then the overrides."""
        merged: dict[str, str] = {}
        for spec in self.project.functions.values():
            merged.update({k: v for k, v in spec.environment.items() if k not in SKIPPED_ENV})
        merged.update(self._overrides)
        return merged

    def start(self) -> FcEmulator:
        self._apply_environment()
        try:
            for spec in self.project.functions.values():
                self._handlers[spec.name] = self._load_handler(spec)
            _reset_instance_state()
            self._pool = ThreadPoolExecutor(self._async_workers, "fc-async")
            self._server = _Server(self._address, _RequestHandler, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fc-emulator",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self._restore_environment()
            raise
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._stop_instances()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._restore_environment()
        _reset_instance_state()

    def __enter__(self) -> FcEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait for the async invocations under way; False if some are still running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._pending_lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def _apply_environment(self) -> None:
        for name, value in self.environment.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _load_handler(self, spec: FunctionSpec, name: str | None = None) -> Callable[..., Any]:
        module_name, _, attr = (name or spec.handler).rpartition(".")
        root = str(self._code_root or spec.code)
        if root not in sys.path:
            sys.path.insert(0, root)
        handler: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
        return handler

    # invocation

    def context(self, spec: FunctionSpec, request_id: str) -> FCContext | FCContext312:
        """FC's context: the role key from the function's environment, s.yaml's timeout; in
        python3.12's layout (no credentials, no service: the key stays in the environment)."""
        env = os.environ
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        credentials = (
            Credentials(
                key_id,
                env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
                env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
            )
            if key_id
            else None
        )
        timeout = spec.timeout if self._timeout_s is None else self._timeout_s
        if spec.runtime == "python3.12":
            meta = FunctionMeta312(spec.name, spec.handler, spec.memory, max(1, int(timeout)))
            return FCContext312(
                meta,
                request_id,
                region=spec.region,
                account_id=self._account_id,
                log_project=spec.log_project,
                log_store=spec.log_store,
            )
        return FCContext(
            request_id=request_id,
            credentials=credentials,
            function=FunctionMeta(spec.name, spec.handler, spec.memory, max(1, int(timeout))),
            service=ServiceMeta(log_project=spec.log_project, log_store=spec.log_store),
            region=spec.region,
            account_id=self._account_id,
        )

    def _call(self, spec: FunctionSpec, event: bytes, request_id: str) -> Any:
        """The handler on a thread of its own, given up on after the function's timeout, once
        the instance's initializer has run.

        FC stops the instance at the deadline; a thread cannot be stopped, so a handler that
        overruns keeps running here after its caller got the timeout error.
        """
        self._initialize(spec, request_id)
        context = self.context(spec, request_id)
        handler = self._handlers[spec.name]
        return _run_bounded(
            f"fc-{spec.name}", partial(handler, event, context), context.function.timeout
        )

    def _initialize(self, spec: FunctionSpec, request_id: str) -> None:
        """The initializer, once per instance; concurrent first invocations wait for it."""
        if spec.initializer is None or spec.name in self._initialized:
            return
        with self._init_locks[spec.name]:
            if spec.name in self._initialized:
                return
            hook = self._load_handler(spec, spec.initializer)
            context = self.context(spec, request_id)
            _run_bounded(f"fc-init-{spec.name}", partial(hook, context), spec.initializer_timeout)
            self._initialized.add(spec.name)
            self.log(f"{spec.name}: initializer {spec.initializer} done")

    def _stop_instances(self) -> None:
        """preStop of every instance that was initialized, each within its timeout."""
        for name in sorted(self._initialized):
            spec = self.project.functions[name]
            if spec.pre_stop is None:
                continue
            hook = self._load_handler(spec, spec.pre_stop)
            context = self.context(spec, str(uuid.uuid4()))
            try:
                _run_bounded(f"fc-prestop-{name}", partial(hook, context), spec.pre_stop_timeout)
            except Exception as exc:
                self.log(f"{name}: preStop failed: {type(exc).__name__}: {exc}")
        self._initialized.clear()

    def invoke(
        self,
        function_name: str,
        payload: bytes,
        *,
        async_: bool = False,
        request_id: str | None = None,
    ) -> Reply:
        """What FC's invoke API answers (no signature check): 200/202, or an FC error."""
        request_id = request_id or str(uuid.uuid4())
        spec = self.project.functions.get(function_name)
        if spec is None:
            return fc_error(
                404,
                "FunctionNotFound",
                f"function '{function_name}' does not exist in service '{self.project.name}'",
                request_id,
            )
        limit = MAX_ASYNC_PAYLOAD if async_ else MAX_SYNC_PAYLOAD
        if len(payload) > limit:
            return fc_error(
                400,
                "EntityTooLarge",
                f"payload size exceeds maximum allowed size ({limit} bytes)",
                request_id,
            )
        if async_:
            self._submit(spec, payload, request_id)
            return Reply(202, [("x-fc-request-id", request_id)], b"")
        started = time.monotonic()
        headers = [("x-fc-request-id", request_id)]
        try:
            body, content_type = _output(self._call(spec, payload, request_id))
        except Exception as exc:
            self.log(f"{spec.name} {request_id}: {UNHANDLED} {type(exc).__name__}: {exc}")
            body, content_type = _error_body(exc), "application/json"
            headers.append(("x-fc-error-type", UNHANDLED))
        headers.append(("Content-Type", content_type))
        headers.append(("x-fc-invocation-duration", str(int((time.monotonic() - started) * 1000))))
        return Reply(200, headers, body)

    def _submit(self, spec: FunctionSpec, payload: bytes, request_id: str) -> None:
        assert self._pool is not None, "the emulator is not started"
        future = self._pool.submit(self._run_async, spec, payload, request_id)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def _run_async(self, spec: FunctionSpec, payload: bytes, request_id: str) -> None:
        """FC's async path: the first try, then up to `async_retries` more with backoff."""
        for attempt in range(spec.async_retries + 1):
            try:
                self._call(spec, payload, request_id)
                return
            except Exception as exc:
                self.log(
                    f"{spec.name} {request_id} (async, try {attempt + 1}/"
                    f"{spec.async_retries + 1}): {type(exc).__name__}: {exc}"
                )
            if self._stopping.wait(self._retry_base_s * 2**attempt):
                return

    # HTTP

    def handle(self, request: _Request) -> Reply:
        request_id = str(uuid.uuid4())
        path = urlsplit(request.target).path
        match = INVOKE_PATH.match(path)
        if match is None:
            return self._http_trigger(request, request_id)
        if request.method != "POST":
            return fc_error(
                400,
                "PathNotSupported",
                f"'{request.method}' against '{path}' is not supported",
                request_id,
            )
        refused = self._authenticate(request, unquote(path), request_id)
        if refused is not None:
            return refused
        service, function_name = unquote(match.group(1)), unquote(match.group(2))
        if service.split(".", 1)[0] != self.project.name:
            return fc_error(
                404, "ServiceNotFound", f"service '{service}' does not exist", request_id
            )
        invocation_type = request.headers.get("x-fc-invocation-type", "Sync")
        if invocation_type not in ("Sync", "Async"):
            return fc_error(
                400,
                "InvalidArgument",
                f"x-fc-invocation-type must be Sync or Async, not '{invocation_type}'",
                request_id,
            )
        return self.invoke(
            function_name,
            request.body,
            async_=invocation_type == "Async",
            request_id=request_id,
        )

    def _authenticate(self, request: _Request, path: str, request_id: str) -> Reply | None:
        """FC's checks, in its order: headers present, clock skew, key id, signature."""
        headers = request.headers
        for name in ("Date", "Authorization"):
            if not headers.get(name):
                return fc_error(
                    400,
                    "MissingRequiredHeader",
                    f"required HTTP header {name} was not specified",
                    request_id,
                )
        try:
            sent = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
        except (TypeError, ValueError):
            sent = None
        if sent is None or abs(time.time() - sent) > MAX_SKEW_S:
            return fc_error(
                403,
                "AccessDenied",
                "the request time is not a valid RFC 1123 date within 15 minutes of "
                "the server time",
                request_id,
            )
        scheme, _, credential = headers["Authorization"].partition(" ")
        key_id, _, signature = credential.partition(":")
        if scheme != "FC" or not key_id or not signature:
            return fc_error(
                400, "InvalidArgument", "the Authorization header is malformed", request_id
            )
        if not hmac.compare_digest(key_id, self._key[0]):
            return fc_error(
                403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'", request_id
            )
        expected = sign(self._key[1], request.method, path, headers)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return fc_error(
                403,
                "SignatureNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your access key and signing method",
                request_id,
            )
        return None

    def _http_trigger(self, request: _Request, request_id: str) -> Reply:
        spec = self.project.http_function
        if spec is None:
            return fc_error(404, "TriggerNotFound", "no function has an http trigger", request_id)
        try:
            result = self._call(spec, http_trigger_event(request, request_id), request_id)
            reply = http_reply(result)
        except Exception as exc:
            self.log(f"{spec.name} {request_id}: {UNHANDLED} {type(exc).__name__}: {exc}")
            reply = Reply(
                502,
                [("Content-Type", "application/json"), ("x-fc-error-type", UNHANDLED)],
                _error_body(exc),
            )
        return Reply(reply.status, [*reply.headers, ("x-fc-request-id", request_id)], reply.body)

    def log(self, line: str) -> None:
        if self._verbose:
            print(f"[fc-emulator] {line}", file=sys.stderr, flush=True)


def _run_bounded(thread_name: str, call: Callable[[], Any], timeout_s: float) -> Any:
    """`call()` on a thread of its own; FunctionTimeout after `timeout_s`, its error re-raised."""
    done = threading.Event()
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=thread_name, daemon=True).start()
    if not done.wait(timeout_s):
        raise FunctionTimeout(timeout_s)
    if failure:
        raise failure[0]
    return result[0]


def _reset_instance_state() -> None:
    """Drop wababind's cached per-instance state, so it is rebuilt from this environment."""
    runtime = sys.modules.get("wababind.runtime")
    reset = getattr(runtime, "reset_runtime", None)
    if callable(reset):
        reset()
