# Two commands on a fresh machine: `make demo` and `make test`. `make venv-deploy` makes
# .venv-deploy, what a sorting-line box needs to run an exported model (no torch).
# Both create .venv with python3 -m venv and install the requirements on first use; a stamp
# named after a hash of the requirements files makes later runs start at once and reinstalls
# when a requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
YOLO_REQS := requirements-yolo.txt requirements-yolo-nodeps.txt
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt $(YOLO_REQS) | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.stamp-run-$(RUN_HASH)
DEV_STAMP := $(VENV)/.stamp-dev-$(DEV_HASH)

DEPLOY_VENV := .venv-deploy
DEPLOY_HASH := $(shell cat requirements-deploy.txt | sha256sum | cut -c1-16)
APP_HASH := $(shell cat requirements-deploy.txt requirements-deploy-app.txt | sha256sum | cut -c1-16)
DEPLOY_STAMP := $(DEPLOY_VENV)/.stamp-deploy-$(DEPLOY_HASH)
APP_STAMP := $(DEPLOY_VENV)/.stamp-app-$(APP_HASH)

.PHONY: demo test lint format venv venv-dev venv-yolo venv-deploy venv-deploy-app clean-venv

demo: $(RUN_STAMP)
	$(PY) demo.py

test: $(DEV_STAMP)
	$(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(DEV_STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

venv: $(RUN_STAMP)
venv-dev: $(DEV_STAMP)

# tools/yolo_seg.py (ultralytics, AGPL-3.0) on top of the run-time install. ultralytics goes in
# without its declared dependencies: requirements-yolo.txt says why.
venv-yolo: $(RUN_STAMP)
	$(PY) -m pip install -r requirements-yolo.txt
	$(PY) -m pip install --no-deps -r requirements-yolo-nodeps.txt

$(RUN_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	rm -f $(VENV)/.stamp-run-*
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(YOLO_REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip install --no-deps -r requirements-yolo-nodeps.txt
	rm -f $(VENV)/.stamp-dev-* $(VENV)/.stamp-run-*
	touch $@ $(RUN_STAMP)

# The deployment install: ONNX Runtime, OpenVINO, OpenCV, numpy and the CLI, no training stack
# (requirements-deploy.txt); venv-deploy-app adds Qt for gui.py.
venv-deploy: $(DEPLOY_STAMP)
venv-deploy-app: $(APP_STAMP)

$(DEPLOY_STAMP): requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -r requirements-deploy.txt
	rm -f $(DEPLOY_VENV)/.stamp-deploy-*
	touch $@

$(APP_STAMP): requirements-deploy.txt requirements-deploy-app.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -r requirements-deploy-app.txt
	rm -f $(DEPLOY_VENV)/.stamp-app-* $(DEPLOY_VENV)/.stamp-deploy-*
	touch $@ $(DEPLOY_STAMP)

clean-venv:
	rm -rf $(VENV) $(DEPLOY_VENV)
