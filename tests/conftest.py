"""Shared fixtures: each lives in tests/fixtures/<what>.py and is registered here."""

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.cams",
    "tests.fixtures.sls",
    "tests.fixtures.handlers",
    "tests.fixtures.fc",
]
