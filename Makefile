# The kit's commands. README.md names two: `make lab` (run the kit) and `make test`.
# Every target installs what it needs first; installing again is a no-op.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install models lab lab-headless test test-fast assignments validate grade export clean-cache

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[cpu,test]"
	rm -f $(VENV)/.installed-* && touch $@

models: install  ## build the cached tokenizer, base LM and SFT model (≈ 90 s once)
	$(PY) -m shared_utils.models

lab: models  ## open JupyterLab on lectures/ (NO_BROWSER=1 for a headless server over SSH)
	$(VENV)/bin/jupyter lab lectures/ $(if $(NO_BROWSER),--no-browser --ip=127.0.0.1,) \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

lab-headless:
	$(MAKE) lab NO_BROWSER=1

test: install  ## the whole test suite: units, every notebook, the grading round trip
	$(PY) -m pytest tests -q

test-fast: install  ## unit tests only (seconds)
	$(PY) -m pytest tests -q -m "not slow"

assignments: install  ## regenerate assignments/ from solutions/ (never edit assignments/ by hand)
	$(PY) -m shared_utils.course release

validate: install  ## validate one notebook: make validate NB=path/to/notebook.ipynb
	$(PY) -m shared_utils.course validate $(NB)

grade: install  ## autograde everything under submitted/
	$(PY) -m shared_utils.course autograde

export: install  ## export grades to grades.csv
	$(PY) -m shared_utils.course export

clean-cache:  ## delete built models (they are rebuilt on next use)
	rm -rf $${ALIGNKIT_CACHE:-$$HOME/.cache/alignkit}
