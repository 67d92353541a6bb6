"""Shared fixtures: each lives in tests/fixtures/<what>.py and is registered here."""

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.cams",
    "tests.fixtures.sls",
    "tests.fixtures.handlers",
    "tests.fixtures.fc",
]

# Fuzzing in `make test` is repeatable (the same examples every run, so CI cannot flake);
# HYPOTHESIS_PROFILE=explore searches new examples each run.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
