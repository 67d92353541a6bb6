"""What the CAMS SDK imports but our calls never run stays unloaded until something uses it
(wababind.deferred): never run at cold start, run once when used, and a real call through the
SDK leaves it unrun."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from wababind.deferred import deferring
from wababind_local.cams_simulator import DEFAULT_KEY
from wababind_local.fc_emulator import ROOT

RAN: list[str] = []  # the bodies that ran, by module name (each test module appends to it)


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Throwaway modules on sys.path: `heavy` and the package `pkg` with `pkg.sub`, each noting
    in RAN that its body ran; `user_a`/`user_b` import `heavy`, as two SDK modules import
    jmespath; `broken` raises."""
    note = "from tests.test_deferred_imports import RAN\nRAN.append(__name__)\n"
    (tmp_path / "heavy.py").write_text(note + "VALUE = 42\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub.py").write_text(note + "VALUE = 7\n")
    (tmp_path / "user_a.py").write_text("import heavy\nfrom pkg import sub\n")
    (tmp_path / "user_b.py").write_text("import heavy\n")
    (tmp_path / "broken.py").write_text(note + "raise RuntimeError('its body fails')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("heavy", "pkg", "pkg.sub", "user_a", "user_b", "broken")
    RAN.clear()
    yield
    for name in names:
        sys.modules.pop(name, None)


def test_a_deferred_module_imported_from_two_places_does_not_run(modules):
    with deferring(["heavy", "pkg.sub"]):
        import user_a  # noqa: F401
        import user_b  # noqa: F401  (a second `import heavy` reads its __spec__: still not run)
    assert RAN == []
    assert sys.modules["heavy"].__spec__.name == "heavy"


def test_the_first_attribute_runs_it_once(modules):
    with deferring(["heavy", "pkg.sub"]):
        import user_a
    assert user_a.heavy.VALUE == 42 and user_a.sub.VALUE == 7
    assert user_a.heavy.VALUE == 42
    assert RAN == ["heavy", "pkg.sub"]
    assert type(sys.modules["heavy"]) is type(sys)  # an ordinary module now


def test_only_the_named_modules_and_only_inside_the_block(modules):
    finders = list(sys.meta_path)
    with deferring(["pkg.sub"]):
        import heavy  # noqa: F401
    assert RAN == ["heavy"]
    assert sys.meta_path == finders


def test_a_body_that_fails_raises_at_its_use_and_leaves_no_half_module(modules):
    with deferring(["broken"]):
        import broken
    with pytest.raises(RuntimeError, match="its body fails"):
        _ = broken.anything
    assert "broken" not in sys.modules


def test_threads_that_touch_it_at_once_run_it_once(modules):
    with deferring(["heavy"]):
        import heavy
    start = threading.Barrier(8)
    values: list[int] = []

    def touch() -> None:
        start.wait()
        values.append(heavy.VALUE)

    threads = [threading.Thread(target=touch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values == [42] * 8 and RAN == ["heavy"]


# A fresh interpreter: the SDK as the function imports it, then a real signed call.
_SDK_CALL = """
import json, sys
from wababind.cams import CamsClient
from wababind.config import parse_cams_endpoint
from wababind.credentials import Credentials
from wababind.deferred import SDK_UNUSED
client = CamsClient(parse_cams_endpoint(sys.argv[1]), "ap-southeast-1", 5)
result = client.bind_waba("6300000000000001", Credentials(sys.argv[2], sys.argv[3], ""))
print(json.dumps({
    "bound": type(result).__name__,
    # each is unloaded (_Deferred) or never imported (CPython 3.11+ imports subprocess lazily)
    "ran": [n for n in SDK_UNUSED
            if type(sys.modules.get(n)).__name__ not in ("_Deferred", "NoneType")],
    "loaded": [n for n in ("cryptography", "jmespath.parser") if n in sys.modules],
}))
"""


def test_a_real_call_through_the_sdk_runs_none_of_them(cams_sim):
    done = subprocess.run(
        [sys.executable, "-c", _SDK_CALL, cams_sim.endpoint, DEFAULT_KEY.access_key_id,
         DEFAULT_KEY.access_key_secret],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"bound": "Bound", "ran": [], "loaded": []}
    assert cams_sim.count() == 1
