# The two commands of the README: `make demo` and `make test`. Both create .venv on first use
# and are fast afterwards (the install re-runs only when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.initlab-installed

.PHONY: demo test lint venv clean browser

venv: $(STAMP) browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[plot,data,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/initlab experiment activations --out initlab-results

# tests/test_browser.py opens the HTML report in headless Chromium: Debian's `chromium` is installed here when
# missing (as root, or through passwordless sudo). If that cannot be done the browser test fails and says how;
# INITLAB_NO_BROWSER=1 skips both the install and the test on purpose.
browser:
	@if [ "$$INITLAB_NO_BROWSER" = 1 ] || command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM" ]; then :; \
	else { if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else false; fi && \
	       $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	     echo "make: could not install chromium: tests/test_browser.py will fail; run 'sudo apt-get install" \
	          "chromium' or set INITLAB_NO_BROWSER=1" >&2; fi

test: $(STAMP) browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q -n 2 -p xdist

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) initlab-results .pytest_cache
