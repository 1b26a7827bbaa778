# The two commands of the README:
#   make demo   set up (once) and run every notebook in the demo profile
#   make test   set up (once) and run the test suite (unit tests + every notebook, demo profile)
# and: make app (the diagnosis app on 127.0.0.1:8866), make lab (JupyterLab on copies of the
# chapters in runs/lab/), make browser-test (Chromium against
# JupyterLab, the app and the static page; needs /usr/bin/chromium: apt-get install -y chromium),
# make web (the static page with the three models in site/, after make demo; needs node and npm)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# onnxruntime-web for the static page, exactly as web/package-lock.json pins it
WEB_DEPS := web/node_modules/.package-lock.json

.PHONY: demo test setup clean-run app browser-test lab gpu-check web web-deps

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0] + ": run make PYTHON=python3.11 ..."'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip 24.1+ rejects catalyst 22.4's malformed metadata ("invalid metadata"), so pin pip below it
	$(BIN)/python -m pip install "pip>=23,<24.1"
	$(BIN)/python -m pip install -c requirements/constraints.txt -e ".[test]"
	# JupyterLab from .venv accepts uploads up to the widget's limit (Tornado's default: 10 MiB)
	$(BIN)/python -c 'from xray_utils.diagnose.uploads import write_jupyter_config as w; print(w("$(VENV)/etc/jupyter"))'
	# chapters run in JupyterLab keep git status clean: git strips outputs (tools/nbclean.py)
	-git rev-parse --git-dir >/dev/null 2>&1 && git config filter.nbclean.clean "$(BIN)/python tools/nbclean.py"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m xray_utils run --profile demo

test: $(STAMP)
	$(BIN)/python -m pytest

app: $(STAMP)
	$(BIN)/python -m xray_utils app

# JupyterLab on copies of the chapters in runs/lab/ (git-ignored): running them, with the outputs
# autosave writes, leaves the committed notebooks untouched; a copy that exists is kept (your
# edits stay), delete it to get the chapter fresh
lab: $(STAMP)
	@mkdir -p runs/lab
	@for nb in notebooks/*.ipynb; do test -e runs/lab/$$(basename $$nb) || cp $$nb runs/lab/; done
	$(BIN)/jupyter lab runs/lab $(if $(filter 0,$(shell id -u)),--allow-root)

browser-test: $(STAMP) $(WEB_DEPS)
	$(BIN)/python -m pytest -m browser tests/browser

$(WEB_DEPS): web/package.json web/package-lock.json
	@command -v npm >/dev/null || (echo "npm is needed for the static page: apt-get install -y npm"; exit 1)
	cd web && npm ci --no-audit --no-fund
	@touch $(WEB_DEPS)

web-deps: $(WEB_DEPS)

web: $(STAMP) $(WEB_DEPS)
	$(BIN)/python -m xray_utils export-web --checkpoints runs/demo/checkpoints --out site

clean-run:
	rm -rf runs/demo

# the GPU check (about 5 minutes on one CUDA GPU; one sentence and exit 0 without a GPU)
gpu-check: $(STAMP)
	$(BIN)/python -m xray_utils bench --gpu
