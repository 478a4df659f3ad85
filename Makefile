# synchub: `make demo` and `make test` set up everything they need (a .venv, and on Debian the AVR tools).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-synchub
APT_PKGS := gcc-avr avr-libc simavr libsimavr-dev chrony nats-server openssl
PYTEST_ARGS ?=

.PHONY: demo test lint firmware firmware-tools train clean help

help:
	@echo "make demo   - set up .venv and run the simulated rig end to end (writes demo-out/)"
	@echo "make test   - set up .venv (+ AVR tools when root) and run every test"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,lsl,plot,train,nats]'
	touch $(STAMP)

# AVR toolchain, simavr and chrony for the firmware and NTP tests, nats-server and openssl for the NATS cluster
# tests: installed with apt when missing and root.  (The tests start their own nats-server processes on free
# loopback ports; Debian's package also enables a nats-server.service on 127.0.0.1:4222, which they do not use.)
firmware-tools:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

firmware: firmware-tools
	$(MAKE) -C firmware

demo: $(STAMP)
	$(BIN)/synchub demo

test: $(STAMP) firmware-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

train: $(STAMP)
	$(BIN)/synchub train

clean:
	rm -rf $(VENV) demo-out build *.egg-info
	-$(MAKE) -C firmware clean
