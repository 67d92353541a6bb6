"""Modules a library imports at its top but our calls never run: created empty, run when used.

aliyun-python-sdk-core imports at its top its RSA key-pair signer, which loads `cryptography`
(a 14 MiB shared library: a fifth of our cold start), requests' charset guesser `chardet`,
`jmespath` for its retry and per-API timeout tables, and more (SDK_UNUSED says why each). We
sign with an AccessKey or an STS token, set both timeouts on every request, turn the SDK's
retries off and read the body as bytes, so none of them runs. Each is put in `sys.modules` with
its body not yet run; the first attribute anyone asks of it runs the body, so nothing breaks if
one is used after all (but for `cryptography`, which the package leaves out).

    import m   (first)   finder: m's real spec, loader wrapped  -> m in sys.modules, body not run
    import m   (again)   sys.modules hit; reads m.__spec__       -> found in m's dict, still not run
    m.anything           _Deferred.__getattr__: run m's body once, then answer from it

importlib.util.LazyLoader runs the body on any attribute, `__spec__` included, which every later
`import m` reads: a module imported from two places (jmespath) would load at the second.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec, PathFinder
from typing import Any

# What the SDK imports that our use of it never runs (wababind.cams):
SDK_UNUSED = (
    # RSA key-pair signing (aliyunsdkcore.auth.signers.rsa_key_pair_signer): `cryptography`,
    # which the package does not even ship (tools/build_package.NEVER_LOADED)
    "aliyunsdkcore.auth.algorithm.sha_hmac256",
    # requests' charset guesser: Response.text of an answer without a charset; the SDK reads
    # .content
    "aliyunsdkcore.vendored.requests.packages.chardet",
    # AcsClient's timeout table (a request without timeouts) and retry table (auto_retry)
    "jmespath",
    # XML request bodies (aliyunsdkcore.utils.parameter_helper); ours are query parameters
    "xml.etree.cElementTree",
    # platform's processor() and the like; the SDK's User-Agent reads uname and sys only
    "subprocess",
)

_lock = threading.RLock()
_running: set[str] = set()  # bodies being run now, under _lock


class _Deferred(types.ModuleType):
    """A module whose body has not run: a missing attribute runs it (once, under a lock; other
    threads wait for it to finish, as they would for an import)."""

    def __getattr__(self, name: str) -> Any:
        with _lock:
            if type(self) is _Deferred:
                if self.__name__ in _running:  # its own body asks for what it has yet to define
                    raise AttributeError(
                        f"partially initialized module {self.__name__!r} has no attribute {name!r}"
                    )
                _run(self)
        return getattr(self, name)


def _run(module: types.ModuleType) -> None:
    spec = module.__spec__
    assert spec is not None and spec.loader is not None
    _running.add(module.__name__)
    try:
        spec.loader.exec_module(module)
    except BaseException:  # as a failed import: not left half run in sys.modules
        sys.modules.pop(module.__name__, None)
        raise
    finally:
        _running.discard(module.__name__)
    module.__class__ = types.ModuleType


class _Loader:
    """Wraps a module's real loader: makes the module, leaves its body for later."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        module: types.ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        assert module.__spec__ is not None
        module.__spec__.loader = module.__loader__ = self.loader
        module.__class__ = _Deferred


class _Finder:
    """A sys.meta_path finder for `names` only: their real spec, with a deferring loader."""

    def __init__(self, names: Collection[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name not in self.names:
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
        return spec


@contextmanager
def deferring(names: Collection[str]) -> Iterator[None]:
    """While inside, the first import of any of `names` leaves its body for its first use."""
    finder = _Finder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
