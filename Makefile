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
# Debian packages for the tests.  POLICY: `make test` never replaces, removes or starts a service of this machine.
# * APT_PKGS are installed with apt (as root, when missing) only if `apt-get install -s` removes nothing (a 'Remv'
#   line stops the install with a message).  Reviewed for services: gcc-avr, avr-libc, simavr, libsimavr-dev,
#   openssl, flite, festival*, the sound themes, qemu-user-static, mmdebstrap: none.  alsa-utils: oneshot units
#   that save/restore mixer levels where a sound card exists (its alsactl daemon runs only with
#   /etc/alsa/state-daemon.conf).  binfmt-support: a oneshot unit that registers binfmt handlers (qemu-aarch64, for
#   the arm64 test); nothing is replaced.
# * UNPACK_DEBS are never installed: chrony would remove systemd-timesyncd, nats-server's postinst enables and
#   starts nats-server.service.  Their programs are unpacked from the .deb (apt-get download + dpkg-deb -x) into
#   $(DEB_CACHE)/PKG, where the tests find them (bench/debs.py); an installed copy is used as it is.
# the arm64 test (tests/system/test_arm64.py): an arm64 Debian 12 root built by mmdebstrap, run under qemu-user
ARM64_PKGS := qemu-user-static mmdebstrap binfmt-support
# gcc (the host's C compiler, no service): the clock shim of `synchub bench lsl-inlet` and its test
APT_PKGS := gcc-avr avr-libc simavr libsimavr-dev openssl gcc $(CORPUS_PKGS) $(ARM64_PKGS)
UNPACK_DEBS := chrony nats-server
DEB_CACHE := $(HOME)/.cache/synchub/debs
# package $$p installed (not merely known to dpkg: a removed package keeps "config-files" state)
INSTALLED = dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed'
PYTEST_ARGS ?=
# npm packages the Foxglove export's test reads its MCAP with (@mcap/core, Foxglove's reader, and @foxglove/schemas;
# fzstd decompresses): installed into $(NPM_DIR) when node/npm are there (tests/formats/test_foxglove.py skips else)
NPM_DIR := $(HOME)/.cache/synchub/npm
NPM_PKGS := @mcap/core@2.2.2 @foxglove/schemas@2.1.0 fzstd@0.1.1

.PHONY: demo test lint firmware firmware-tools unpacked-debs arm64-binfmt npm-tools install uninstall train clean help

help:
	@echo "make demo   - set up .venv and run the simulated rig end to end (writes demo-out/)"
	@echo "make test   - set up .venv (+ AVR tools and corpus sources when root) and run every test"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,lsl,plot,train,nats,neural]'
	touch $(STAMP)

# AVR toolchain and simavr for the firmware tests, openssl for the NATS cluster tests, the corpus's TTS engines and
# sounds for its tests and `bench align --real`, qemu/mmdebstrap for the arm64 test: installed with apt when missing
# and root, under the policy above.  (The NATS and NTP tests start their own nats-server/chronyd on loopback ports.)
firmware-tools:
	@missing=""; for p in $(APT_PKGS); do $(INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq || true); \
	    removes=$$(apt-get install -s $$missing 2>/dev/null | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' '); \
	    if [ -n "$$removes" ]; then \
	      echo "not installing$$missing: apt would remove $$removes (make test never replaces a package)"; \
	    else echo "installing:$$missing"; \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	  else echo "warning: missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

# chronyd and nats-server unpacked, not installed (policy above); skipped where the package is installed
unpacked-debs:
	@for p in $(UNPACK_DEBS); do \
	  $(INSTALLED) && continue; [ -f $(DEB_CACHE)/$$p/.unpacked ] && continue; \
	  mkdir -p $(DEB_CACHE)/$$p && rm -f $(DEB_CACHE)/$$p/*.deb && \
	  (cd $(DEB_CACHE)/$$p && apt-get download -qq $$p 2>/dev/null && dpkg-deb -x $${p}_*.deb . && rm -f $${p}_*.deb && \
	   touch .unpacked && echo "unpacked $$p into $(DEB_CACHE)/$$p") || \
	  echo "warning: could not unpack $$p into $(DEB_CACHE)/$$p; its tests will skip"; \
	done

# the arm64 test runs arm64 programs through binfmt_misc + qemu-aarch64 (root only; the test skips otherwise)
# ... and its arm64 Debian root (mmdebstrap, once: cached under ~/.cache/synchub/arm64-root, as the .debs are), built
# here rather than inside the test, whose time limit is for the test (a fresh machine's build took over 5 minutes)
arm64-binfmt: firmware-tools $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v update-binfmts >/dev/null; then \
	  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true; \
	  grep -qs enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || update-binfmts --enable qemu-aarch64 || true; \
	fi
	@if [ "$$(id -u)" = 0 ] && command -v mmdebstrap >/dev/null; then \
	  $(BIN)/python tests/support/arm64root.py >/dev/null || \
	  echo "warning: the arm64 root could not be built here; tests/system/test_arm64.py will try again"; \
	fi

firmware: firmware-tools
	$(MAKE) -C firmware

demo: $(STAMP)
	$(BIN)/synchub demo

npm-tools:
	@if command -v npm >/dev/null && [ "$$(cat $(NPM_DIR)/.installed 2>/dev/null)" != "$(NPM_PKGS)" ]; then \
	  mkdir -p $(NPM_DIR) && (cd $(NPM_DIR) && npm install --no-audit --no-fund --silent $(NPM_PKGS)) && \
	  echo "$(NPM_PKGS)" > $(NPM_DIR)/.installed || \
	  echo "warning: npm could not install $(NPM_PKGS) into $(NPM_DIR); the Foxglove reader test will skip"; \
	fi

test: $(STAMP) firmware-tools unpacked-debs arm64-binfmt npm-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

train: $(STAMP)
	$(BIN)/synchub train

# The agent as a systemd service from this checkout (as root; no dev venv, no torch): the runtime package goes into
# /opt/synchub/.venv, whose `synchub install` does the rest (README "Real rig").  make install CONFIG=agent.toml
# [COLLECTOR_KEY=collector.key] [INSTALL_ARGS="--role both"]; make uninstall [INSTALL_ARGS=--purge]
OPT_VENV := /opt/synchub/.venv
install:
	@[ "$$(id -u)" = 0 ] || { echo "make install: run as root (it creates a user, /opt/synchub and units)"; exit 2; }
	test -x $(OPT_VENV)/bin/python || python3 -m venv $(OPT_VENV)
	$(OPT_VENV)/bin/python -m pip install -q .
	$(OPT_VENV)/bin/synchub install --from . $(if $(CONFIG),--config $(CONFIG)) \
	  $(if $(COLLECTOR_KEY),--collector-key $(COLLECTOR_KEY)) $(INSTALL_ARGS)

uninstall:
	@[ "$$(id -u)" = 0 ] || { echo "make uninstall: run as root"; exit 2; }
	$(OPT_VENV)/bin/synchub uninstall $(INSTALL_ARGS)

clean:
	rm -rf $(VENV) demo-out build *.egg-info
	-$(MAKE) -C firmware clean
