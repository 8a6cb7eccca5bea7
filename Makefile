# HNN Workbench: every target installs what it needs into .venv first.
#   make reproduce   execute every curated notebook headlessly into results/ (quick; FULL=1 for paper scale)
#   make test        the test suite, which also runs every notebook with SMOKE=True
#   make lab         JupyterLab on notebooks/
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
RESULTS    ?= results
FULL       ?= 0
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.hnnwb-installed

.PHONY: install reproduce test lab clean-results

install: $(STAMP)

# torch goes in first and alone, so the project's own install never pulls another build of it.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

reproduce: install
	$(PY) ci/run_notebooks.py --out $(RESULTS) $(if $(filter 1 true yes,$(FULL)),--full,)

# pytest's exit code 5 means it collected nothing: that must fail, never look green.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; exit $$rc

lab: install
	$(VENV)/bin/jupyter lab notebooks/

clean-results:
	rm -rf $(RESULTS)
