# synchub: `make demo` and `make test` set up everything they need (a .venv, and on Debian the AVR tools and the
# real-signal corpus's sources).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-synchub
# the real-signal corpus's sources (models/corpus/sources.py DEBIAN_PACKAGES; DATA_CARD.md): TTS engines, voices,
# recorded speech and sound effects
CORPUS_PKGS := flite festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	alsa-utils sound-theme-freedesktop oxygen-sounds sound-icons
APT_PKGS := gcc-avr avr-libc simavr libsimavr-dev chrony nats-server openssl $(CORPUS_PKGS)
PYTEST_ARGS ?=

.PHONY: demo test lint firmware firmware-tools train clean help

help:
	@echo "make demo   - set up .venv and run the simulated rig end to end (writes demo-out/)"
	@echo "make test   - set up .venv (+ AVR tools and corpus sources when root) and run every test"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,lsl,plot,train,nats]'
	touch $(STAMP)

# AVR toolchain, simavr and chrony for the firmware and NTP tests, nats-server and openssl for the NATS cluster
# tests, the corpus's TTS engines and sounds for its tests and `bench align --real`: installed with apt when
# missing and root.  (The NATS tests start their own nats-server processes on free loopback ports.)
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
