# Everything runs inside a virtual environment that the targets create themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# A pinned torch is installed first. On this CPU-only machine torch==2.13.0 resolves to a local CPU
# wheel; elsewhere override it, e.g. `make TORCH_SPEC="torch>=2.4" install` or a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install browser demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hfkit train clm_pretrain overwrite_output_dir=true

# the UI test drives Debian's chromium with Playwright (Playwright's own browser download needs the internet)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } || \
	  echo "make: could not install chromium (apt-get install chromium, as root): the UI test will fail"

test: install browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: install
	$(PY) bench/train_throughput.py
	$(PY) bench/speed_settings.py
	$(PY) bench/packing.py
	$(PY) bench/sft_packing.py
	$(PY) bench/peft_memory.py
	$(PY) bench/multi_process.py
	$(PY) bench/generation.py
	$(PY) bench/rag.py

clean:
	rm -rf $(VENV) runs build *.egg-info
