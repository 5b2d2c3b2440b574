# threefold — two commands on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the PyTorch build: the default CPU build (torch==2.13.0), or e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.threefold-installed

.PHONY: venv demo test lint lock system-deps browser-deps bench clean

# The project installs with deploy/constraints.txt, so tests run on the versions the images get
# (tests/deploy/test_dependency_lock.py checks it); LOCKED= installs the newest releases instead.
LOCKED ?= -c deploy/constraints.txt
# A venv installed from the lock with the lock's torch vouches for it: tests fail if it drifts.
LOCK_MARKER := .threefold-lock-reference

$(STAMP): pyproject.toml deploy/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet $(LOCKED) -e '.[dev]'
	$(if $(and $(LOCKED),$(filter torch==2.13.0,$(TORCH_SPEC))),touch,rm -f) $(VENV)/$(LOCK_MARKER)
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use: chromium and npm (browser tests), redis-server built with TLS
# (tests/support/tls.py), tini (the image's init, tests/deploy/test_graceful_shutdown.py).
# Installed with apt-get, through sudo when not root.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-server: the TLS tests start one"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing Debian's npm: the browser tests install axe-core with it"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq npm >/dev/null; }
	@command -v tini >/dev/null 2>&1 || { \
	  echo "installing Debian's tini: the image's init, run by tests/deploy"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq tini >/dev/null; }

browser-deps: system-deps  # kept for scripts that call it

demo: venv
	$(BIN)/threefold demo

# pytest's exit code 5 (collected no tests) fails the run, saying so here: make itself exits 2
# for any failed recipe, so nothing that runs `make test` (.ci/run) could tell it apart.
test: venv system-deps
	@echo "$(BIN)/python -m pytest"; $(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then \
	  echo "pytest collected no tests (exit 5): failing, a test run must run tests" >&2; \
	fi; exit $$status

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# deploy/constraints.txt: the image's dependencies pinned to this venv's versions (run it once the
# suite passed here); marks the venv as the lock's reference, so tests/deploy catch later drift.
lock: venv
	$(BIN)/python deploy/lock.py

BENCHMARKS := embedder_speed classifier_fpb alerts_quality alerts_throughput qa_faq qa_api_load \
	recs_movielens recs_api_load

bench: venv  # needs ../shared/data; takes tens of minutes on 2 cores
	for name in $(BENCHMARKS); do $(BIN)/python -m bench.$$name || exit 1; done
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache tests/.artifacts
