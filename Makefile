# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test` (the suite).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EXTRAS  ?= all
# The CPU wheel of torch 2.13.0 lies on this machine's disk; a bare `torch` requirement would pull a CUDA build.
TORCH   ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo demo-quick demo-ablations data test test-slow bench lint format fetch-tokenizer clean

$(STAMP): pyproject.toml setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

fetch-tokenizer: venv
	$(PY) -c "from mgte_hf.tokenizer import fetch_xlmr_tokenizer as f; print('XLM-R tokenizer in', f())"

data: venv
	$(VENV)/bin/mgte-hf data build

# Trains, evaluates and packages a small mGTE on real data: fixed step counts, seeds and threads, so the report is the
# same under any load. OpenMP threads spin briefly, then sleep, between the small model's many short kernels: the
# default (long spinning) made every step several times slower on a machine shared with other jobs, sleeping at once
# (OMP_WAIT_POLICY=PASSIVE) made the contrastive steps 2.3x slower on a quiet one. Set GOMP_SPINCOUNT to override.
# Each target replaces its own folder's earlier run (--overwrite).
DEMO_ENV := GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-30000}

demo: venv
	$(DEMO_ENV) $(VENV)/bin/mgte-hf demo --overwrite --output demo-output

demo-quick: venv
	$(DEMO_ENV) $(VENV)/bin/mgte-hf demo --quick --overwrite --output demo-output-quick

# The demo and its ablations (revNTK, 512 against 2 048 tokens, Matryoshka sizes): a few minutes more.
demo-ablations: venv
	$(DEMO_ENV) $(VENV)/bin/mgte-hf demo --ablations --overwrite --output demo-output

# pytest exits 5 when it collected no test; that is not a failure of the suite.
test: venv fetch-tokenizer
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-slow: venv fetch-tokenizer
	$(PY) -m pytest -q -m "slow"

bench: venv
	$(PY) -m benchmarks.run

lint: venv
	$(VENV)/bin/ruff check src tests examples benchmarks

format: venv
	$(VENV)/bin/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
