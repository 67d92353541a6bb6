# wababind — every command sets up what it needs; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/functions/bind_waba:$(CURDIR)/local:$(CURDIR)

.PHONY: demo test serve bench package lint typecheck clean

$(VENV)/.runtime: requirements.txt requirements-sls.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-sls.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Serverless Devs CLI, pinned, project-local: the fc3 schema test renders s*.yaml with it (offline).
S_CLI := node_modules/.bin/s
$(S_CLI): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.runtime
	$(PY) -m wababind_local.demo

serve: $(VENV)/.dev
	$(PY) -m wababind_local.fc_emulator --port 9000

bench: $(VENV)/.dev
	$(PY) -m wababind_local.bench

# The code package `s deploy` uploads (its pre-deploy action runs the same script), with its
# size against the official Tea SDK client installed the same way. OUTCOME_SINKS=log,sls adds
# the SLS SDK.
package: $(VENV)/.runtime
	$(PY) tools/build_package.py --compare-tea

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

# The quota's Lua script also runs on an old Redis (tools/build_old_redis.sh says which, why).
OLD_REDIS := build/redis-3.2.6/redis-server
$(OLD_REDIS): tools/build_old_redis.sh
	bash tools/build_old_redis.sh $(dir $@)

# The suite runs against a real redis-server that this target starts and stops.
test: $(VENV)/.dev $(S_CLI) $(OLD_REDIS)
	@command -v redis-server >/dev/null || { echo "make test needs redis-server (apt-get install redis-server)"; exit 1; }
	$(MAKE) --no-print-directory lint typecheck
	@dir=$$(mktemp -d); port=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	redis-server --port $$port --bind 127.0.0.1 --save "" --appendonly no --dir $$dir \
	  --daemonize yes --pidfile $$dir/redis.pid --logfile $$dir/redis.log; \
	for i in $$(seq 50); do redis-cli -p $$port ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	WABABIND_TEST_REDIS_URL=redis://127.0.0.1:$$port/0 WABABIND_OLD_REDIS_SERVER=$(CURDIR)/$(OLD_REDIS) \
	  $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	kill $$(cat $$dir/redis.pid) 2>/dev/null; rm -rf $$dir; exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build node_modules
