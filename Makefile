# Two commands on a fresh Debian machine:
#   make demo   sets everything up and runs a demo chain (HQ and two stores)
#   make test   sets everything up and runs the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROMTOOL := $(VENV)/bin/promtool

.PHONY: setup system-deps demo demo-store test lint clean

setup: system-deps $(STAMP) $(PROMTOOL)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[hardware,postgres,dev]'
	touch $(STAMP)

# promtool checks and unit-tests docs/alerts/huiyuan.rules.yml (tests/edge/test_metrics_rules.py).
# Only the binary is taken from Debian's prometheus package, so that no Prometheus server
# is installed or started on a developer's machine.
$(PROMTOOL): $(STAMP)
	@if command -v promtool >/dev/null; then ln -sf "$$(command -v promtool)" $@; else \
		tmp=$$(mktemp -d) && cd $$tmp && \
		{ apt-get download -q prometheus || { apt-get update -q && apt-get download -q prometheus; }; } && \
		dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > $(abspath $@) && \
		chmod 755 $(abspath $@) && rm -rf $$tmp; fi

# Mosquitto is a real part of the tests (a private broker per test session);
# libusb lets pyusb find readers; a CJK font renders raster receipts and the screens;
# chromium and its driver run the screen tests in a real browser (tests/browser.py).
SYSTEM_PACKAGES := mosquitto libusb-1.0-0 fonts-wqy-microhei chromium chromium-driver
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# A private Mosquitto, HQ on SQLite (ingest worker and API) and two stores, each
# with its till API and sync agent; Ctrl-C stops them all.
demo: setup
	$(PY) -m edge.sync.demo --dir var/chain-demo

# One store on its own, no HQ: the till API on http://127.0.0.1:8080.
demo-store: setup
	$(PY) -m edge.demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var demo .pytest_cache
