"""Local Function Compute: the functions of s.yaml behind FC's invoke API and an HTTP trigger.

`fc2.Client(endpoint=..., accessKeyID=..., accessKeySecret=...).invoke_function(svc, fn, ...)`
works against it unchanged: `POST /2016-08-15/services/{svc}[.{qualifier}]/functions/{fn}/
invocations`, signed `FC id:base64(HMAC-SHA256)` and checked against the configured key, sync
(200, `x-fc-error-type` on an unhandled error) or async (`x-fc-invocation-type: Async` → 202,
run in the background with FC's retries). Every other request goes to the function that has an
`http` trigger, as an FC 3.0 HTTP trigger event. Handlers run in this process, all functions'
environments merged into os.environ (one process plays every instance); each gets FC's context
(fc_context.py), and past the function's `timeout` its caller gets FC's timeout error.

`python -m wababind_local.fc_emulator` (`make serve`) starts it with the CAMS simulator behind.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.utils
import hashlib
import hmac
import importlib
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from wababind_local.fc_context import Credentials, FCContext, FunctionMeta, ServiceMeta

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "2016-08-15"
INVOKE_PATH = re.compile(rf"^/{API_VERSION}/services/([^/]+)/functions/([^/]+)/invocations/?$")
MAX_SKEW_S = 15 * 60
MAX_SYNC_PAYLOAD = 32 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 128 * 1024
DEFAULT_ASYNC_RETRIES = 3  # FC's default maxAsyncRetryAttempts
UNHANDLED = "UnhandledInvocationError"

# Local-only defaults: `make serve`, the README examples and the CLI use them when nothing is set.
LOCAL_FC_KEY_ID = "LocalFcAccessKeyId"
LOCAL_FC_KEY_SECRET = "LocalFcAccessKeySecret"  # a well-known local dev value
LOCAL_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"wababind-local-dev-webhook-key!!").decode()
# s.yaml values that describe FC's file layout, not this process.
SKIPPED_ENV = frozenset({"PYTHONPATH"})

Handler = Callable[[bytes, Any], Any]


# --- s.yaml ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """One fc3 resource of s.yaml, as far as running it locally needs."""

    name: str
    handler: str
    code: Path
    memory: int = 512
    timeout: int = 3
    environment: dict[str, str] = field(default_factory=dict)
    http_trigger: bool = False
    async_retries: int = DEFAULT_ASYNC_RETRIES
    region: str = "ap-southeast-1"
    log_project: str = ""
    log_store: str = ""


@dataclass(frozen=True)
class Project:
    name: str
    functions: dict[str, FunctionSpec]

    @property
    def http_function(self) -> FunctionSpec | None:
        return next((f for f in self.functions.values() if f.http_trigger), None)


_TEMPLATE = re.compile(r"\$\{([^{}]*)\}")
_ENV_CALL = re.compile(r"""^env\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)$""")
_UNRESOLVED = object()


def _lookup(expr: str, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    expr = expr.strip()
    if m := _ENV_CALL.match(expr):
        return env.get(m.group(1), m.group(2) if m.group(2) is not None else "")
    if expr.startswith("vars."):
        node: Any = variables
        for part in expr[len("vars.") :].split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _UNRESOLVED
            node = node[part]
        return node
    return _UNRESOLVED


def resolve(value: Any, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Resolve `${env('X', 'd')}` and `${vars.a.b}` in a YAML value; others stay as written."""
    if isinstance(value, Mapping):
        return {k: resolve(v, variables, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables, env) for v in value]
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value)
    if whole:
        found = _lookup(whole.group(1), variables, env)
        return value if found is _UNRESOLVED else found

    def substitute(m: re.Match[str]) -> str:
        found = _lookup(m.group(1), variables, env)
        return m.group(0) if found is _UNRESOLVED else str(found)

    return _TEMPLATE.sub(substitute, value)


def load_project(s_yaml: Path, env: Mapping[str, str] | None = None) -> Project:
    """The project name and its fc3 functions, templates resolved against `env` (os.environ)."""
    env = os.environ if env is None else env
    doc = yaml.safe_load(s_yaml.read_text()) or {}
    raw_vars = doc.get("vars") or {}
    variables = resolve(raw_vars, resolve(raw_vars, {}, env), env)
    functions: dict[str, FunctionSpec] = {}
    for resource in (doc.get("resources") or {}).values():
        props = resolve((resource or {}).get("props") or {}, variables, env)
        if "functionName" not in props or "handler" not in props:
            continue
        log = props.get("logConfig") if isinstance(props.get("logConfig"), Mapping) else {}
        async_cfg = props.get("asyncInvokeConfig") or {}
        spec = FunctionSpec(
            name=str(props["functionName"]),
            handler=str(props["handler"]),
            code=(s_yaml.parent / str(props.get("code", "."))).resolve(),
            memory=int(props.get("memorySize", 512)),
            timeout=int(props.get("timeout", 3)),
            environment={
                str(k): "" if v is None else str(v)
                for k, v in (props.get("environmentVariables") or {}).items()
            },
            http_trigger=any(
                (t or {}).get("triggerType") == "http" for t in props.get("triggers") or []
            ),
            async_retries=int(async_cfg.get("maxAsyncRetryAttempts", DEFAULT_ASYNC_RETRIES)),
            region=str(props.get("region", "ap-southeast-1")),
            log_project=str(log.get("project", "")),
            log_store=str(log.get("logstore", "")),
        )
        functions[spec.name] = spec
    return Project(name=str(doc.get("name", "")), functions=functions)


# --- FC's request signature -------------------------------------------------------------------


def string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """As fc2.auth builds it: method, content-md5, content-type, date, x-fc-* headers, path."""
    lower = {k.lower(): v for k, v in headers.items()}
    fc_headers = sorted((k, v) for k, v in lower.items() if k.startswith("x-fc-"))
    canonical = "".join(f"{k}:{v}\n" for k, v in fc_headers)
    return "\n".join(
        [
            method.upper(),
            lower.get("content-md5", ""),
            lower.get("content-type", ""),
            lower.get("date", ""),
            canonical + path,
        ]
    )


def sign(secret: str, method: str, path: str, headers: Mapping[str, str]) -> str:
    digest = hmac.new(
        secret.encode(), string_to_sign(method, path, headers).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (a list, so a header may repeat) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def fc_error(status: int, code: str, message: str, request_id: str) -> Reply:
    body = json.dumps({"ErrorCode": code, "ErrorMessage": message}).encode()
    return Reply(
        status,
        [("Content-Type", "application/json"), ("x-fc-request-id", request_id)],
        body,
    )


class FunctionTimeout(Exception):
    """The handler ran past the function's timeout; FC answers without waiting for it."""

    def __init__(self, timeout_s: float):
        super().__init__(f"Function timed out after {timeout_s:g} seconds")


def _error_body(exc: BaseException) -> bytes:
    """What FC shows of an unhandled exception: its type and message, never a traceback."""
    if isinstance(exc, FunctionTimeout):
        return json.dumps({"errorMessage": str(exc)}).encode()
    return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode()


def _output(result: Any) -> tuple[bytes, str]:
    if result is None:
        return b"", "application/octet-stream"
    if isinstance(result, bytes):
        return result, "application/octet-stream"
    if isinstance(result, str):
        return result.encode(), "application/octet-stream"
    return json.dumps(result).encode(), "application/json"


# --- the emulator ----------------------------------------------------------------------------


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

    def _load_handler(self, spec: FunctionSpec) -> Handler:
        module_name, _, attr = spec.handler.rpartition(".")
        root = str(self._code_root or spec.code)
        if root not in sys.path:
            sys.path.insert(0, root)
        handler: Handler = getattr(importlib.import_module(module_name), attr)
        return handler

    # invocation

    def context(self, spec: FunctionSpec, request_id: str) -> FCContext:
        """FC's context: the role key from the function's environment, s.yaml's timeout."""
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
        return FCContext(
            request_id=request_id,
            credentials=credentials,
            function=FunctionMeta(spec.name, spec.handler, spec.memory, max(1, int(timeout))),
            service=ServiceMeta(log_project=spec.log_project, log_store=spec.log_store),
            region=spec.region,
            account_id=self._account_id,
        )

    def _call(self, spec: FunctionSpec, event: bytes, request_id: str) -> Any:
        """The handler on a thread of its own, given up on after the function's timeout.

        FC stops the instance at the deadline; a thread cannot be stopped, so a handler that
        overruns keeps running here after its caller got the timeout error.
        """
        context = self.context(spec, request_id)
        done = threading.Event()
        result: list[Any] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                result.append(self._handlers[spec.name](event, context))
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name=f"fc-{spec.name}", daemon=True).start()
        if not done.wait(context.function.timeout):
            raise FunctionTimeout(context.function.timeout)
        if failure:
            raise failure[0]
        return result[0]

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
            self._log(f"{spec.name} {request_id}: {UNHANDLED} {type(exc).__name__}: {exc}")
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
                self._log(
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
            self._log(f"{spec.name} {request_id}: {UNHANDLED} {type(exc).__name__}: {exc}")
            reply = Reply(
                502,
                [("Content-Type", "application/json"), ("x-fc-error-type", UNHANDLED)],
                _error_body(exc),
            )
        return Reply(reply.status, [*reply.headers, ("x-fc-request-id", request_id)], reply.body)

    def _log(self, line: str) -> None:
        if self._verbose:
            print(f"[fc-emulator] {line}", file=sys.stderr, flush=True)


def _reset_instance_state() -> None:
    """Drop wababind's cached per-instance state, so it is rebuilt from this environment."""
    runtime = sys.modules.get("wababind.runtime")
    reset = getattr(runtime, "reset_runtime", None)
    if callable(reset):
        reset()


# --- HTTP trigger event and response ------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    protocol: str
    headers: _Headers
    body: bytes
    client_ip: str


class _Headers(dict[str, str]):
    """Header name → value, case-insensitive lookups; repeated headers joined with commas."""

    def get(self, name: str, default: Any = None) -> Any:
        lname = name.lower()
        return next((v for k, v in self.items() if k.lower() == lname), default)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)


def http_trigger_event(request: _Request, request_id: str) -> bytes:
    """The FC 3.0 HTTP trigger event (payload format v1) for one request."""
    parts = urlsplit(request.target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    try:
        body, encoded = request.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(request.body).decode(), True
    host = (request.headers.get("Host") or "127.0.0.1").split(":")[0]
    now = datetime.now(timezone.utc)
    return json.dumps(
        {
            "version": "v1",
            "rawPath": parts.path or "/",
            "body": body,
            "isBase64Encoded": encoded,
            "headers": dict(request.headers),
            "queryParameters": query,
            "requestContext": {
                "accountId": "1234567890123456",
                "domainName": host,
                "domainPrefix": host.split(".")[0],
                "http": {
                    "method": request.method,
                    "path": parts.path or "/",
                    "protocol": request.protocol,
                    "sourceIp": request.client_ip,
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": request_id,
                "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timeEpoch": str(int(now.timestamp() * 1000)),
            },
        }
    ).encode()


def http_reply(result: Any) -> Reply:
    """The handler's `{statusCode, headers, body, isBase64Encoded}` as an HTTP answer."""
    if not isinstance(result, Mapping) or "statusCode" not in result:
        body, content_type = _output(result)
        return Reply(200, [("Content-Type", content_type)], body)
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        values = value if isinstance(value, list) else [value]
        headers.extend((str(name), str(v)) for v in values)
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw)
        except (binascii.Error, TypeError):
            body = str(raw).encode()
    elif isinstance(raw, bytes):
        body = raw
    elif isinstance(raw, str):
        body = raw.encode()
    else:
        body = json.dumps(raw).encode()
    return Reply(int(result["statusCode"]), headers, body)


# --- the server ------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: FcEmulator
    ):
        self.emulator = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer: one line when verbose, never a traceback."""
        exc = sys.exc_info()[1]
        self.emulator._log(f"connection from {client_address[0]}: {type(exc).__name__}")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY on each connection
    server: _Server

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send(fc_error(400, "InvalidArgument", str(exc), str(uuid.uuid4())))
            return
        headers = _Headers()
        for name, value in self.headers.items():
            existing = headers.get(name)
            if existing is None:
                headers[name] = value
            else:
                key = next(k for k in headers if k.lower() == name.lower())
                headers[key] = f"{existing},{value}"
        request = _Request(
            self.command, self.path, self.request_version, headers, body, self.client_address[0]
        )
        reply = self.server.emulator.handle(request)
        self._send(reply)
        self.server.emulator._log(f"{self.command} {self.path} → {reply.status}")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_SYNC_PAYLOAD:
            raise ValueError("payload too large")
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator logs one line per request itself when verbose."""


# --- `make serve` ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`make serve`: serve in the foreground until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.fc_emulator",
        description="Local Function Compute: the s.yaml functions, the CAMS simulator behind.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--s-yaml", type=Path, default=ROOT / "s.yaml")
    parser.add_argument("--no-demo-faults", action="store_true", help="a fault-free simulator")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    args = parser.parse_args(argv)

    from wababind_local.cams_simulator import DEFAULT_STS_KEY, CamsSimulator

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    key_id = os.environ.get("WABABIND_LOCAL_FC_KEY_ID", LOCAL_FC_KEY_ID)
    key_secret = os.environ.get("WABABIND_LOCAL_FC_KEY_SECRET", LOCAL_FC_KEY_SECRET)
    webhook_secret = os.environ.get("WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    try:
        with CamsSimulator(demo_faults=not args.no_demo_faults) as sim:
            overrides = {
                "CAMS_ENDPOINT": sim.endpoint,
                # What FC gives a function with a role: an STS key (the simulator's).
                "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_STS_KEY.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_STS_KEY.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": DEFAULT_STS_KEY.security_token or "",
                "WEBHOOK_SECRET": webhook_secret,
            }
            emulator = FcEmulator(
                s_yaml=args.s_yaml,
                access_key_id=key_id,
                access_key_secret=key_secret,
                host=args.host,
                port=args.port,
                env=overrides,
                verbose=not args.quiet,
            )
            try:
                emulator.start()
            except OSError as exc:
                print(
                    f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                    "is another `make serve` running? (--port picks another)",
                    file=sys.stderr,
                )
                return 1
            try:
                print(banner(emulator, sim.endpoint, key_id, key_secret, webhook_secret))
                print("Ctrl-C stops.", flush=True)
                threading.Event().wait()
            except KeyboardInterrupt:
                print("stopping", flush=True)
            finally:
                emulator.stop()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    return 0


def banner(
    emulator: FcEmulator, cams_endpoint: str, key_id: str, key_secret: str, webhook_secret: str
) -> str:
    """Where everything is; secrets are named, never shown (README has the local dev values)."""
    project = emulator.project
    http_fn = project.http_function
    shown_key = (
        "the local dev secret (README)"
        if key_secret == LOCAL_FC_KEY_SECRET
        else "secret from $WABABIND_LOCAL_FC_KEY_SECRET"
    )
    shown_webhook = (
        "the local dev secret (`wababind sign` uses it)"
        if webhook_secret == LOCAL_WEBHOOK_SECRET
        else "from $WEBHOOK_SECRET"
    )
    lines = [
        "wababind local Function Compute",
        f"  HTTP function   {http_fn.name if http_fn else '-'}  {emulator.endpoint}/",
        f"  fc2 endpoint    {emulator.endpoint}  service {project.name}",
        f"  functions       {', '.join(project.functions)}",
        f"  fc2 AccessKey   {key_id}, {shown_key}",
        f"  WEBHOOK_SECRET  {shown_webhook}",
        f"  CAMS simulator  {cams_endpoint}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
