# Quick start: `make demo` and `make test` each set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch. On Linux, PyPI's torch is the CUDA build (several GB), so the CPU wheel comes from PyTorch's
# CPU index (a wheel already in pip's find-links or cache is used as it is). macOS and Windows wheels on PyPI are
# CPU builds. For a CUDA machine: make install TORCH_SPEC=torch==2.13.0 TORCH_INDEX=
ifeq ($(shell uname -s),Linux)
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
else
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
endif
# The evaluation embedders' reference implementations, for tests/test_parity.py only. Installed with --no-deps:
# their own pins (numpy<2, torchaudio, wandb, ...) would break this environment; the tests load only what they need.
PARITY_REFERENCES := panns-inference==0.1.1 torchlibrosa==0.1.0 torchvggish==0.2 hear21passt==0.0.26 msclap==1.3.4 \
	laion-clap==1.1.7

.PHONY: install demo test browser format corpus clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"  # torch's own dependencies, from the usual index
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(PARITY_REFERENCES)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file to each at a time, each with one torch/OpenMP
# thread: most tests are small models, subprocesses and file work that leave a second thread idle (docs/platforms.md)
TEST_WORKERS ?= 2

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The studio's browser test drives Debian's headless Chromium (installed here if missing; skipped without apt).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	(command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	echo "make: no chromium + chromium-driver and no apt-get: the studio's browser test will be skipped"

# ruff's fixes and formatting (`make test` only checks them)
format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The demo training corpus: procedural sounds + Debian's CC0 sonic-pi-samples (installed here if missing).
corpus: $(STAMP)
	test -d /usr/share/sonic-pi/samples || (apt-get update -qq && apt-get install -y -qq sonic-pi-samples)
	$(PY) -m rewas corpus corpus --debian

clean:
	rm -rf $(VENV) build *.egg-info demo_output
