# postwarden — the two commands are `make run` and `make test`; both do all set-up.
# Debian's interpreter, not one under /root: the daemons run in tests as the unprivileged
# service user, who must be able to execute the venv's python (/root is 0700).
PYTHON    ?= /usr/bin/python3
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
# postfix: the tests' private instances; libmilter-dev: pymilter (the tests' libmilter
# reference milter) builds against it;
# swaks: the demo's and tests' SMTP client; dnsmasq-base: the loopback DNS server of DKIM tests;
# python3-venv/-dev: the venv and pymilter's C build against Debian's Python; dovecot-sieve:
# sievec, which compiles the shipped Sieve rule in the tests; systemd: systemd-analyze verify;
# chromium, chromium-driver: the headless browser of the web console's tests (Debian's build:
# Playwright's own browser download is not used); libpq5: psycopg's client library (the
# PostgreSQL store); postgresql: the private cluster of the fleet tests (never its own cluster);
# gcc: pymilter's build and the benchmark's load generator; git, ca-certificates: what README "Install on a server" installs.
DEBIAN_PACKAGES := postfix libmilter-dev swaks dnsmasq-base openssl python3-venv python3-dev \
                   dovecot-sieve systemd chromium chromium-driver libpq5 postgresql gcc git \
                   ca-certificates

.PHONY: deps system-deps test run lint bench soak clean

deps: system-deps $(STAMP)

system-deps:
	@tools/install-system-deps $(DEBIAN_PACKAGES)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: deps
	$(PY) -m ruff check postwarden tests tools
	$(PY) -m pytest tests

# Ports from the environment: see tests/demo.py (POSTWARDEN_DEMO_SMTP_PORT=2526 make run).
run: deps
	$(PY) -m tests.demo

lint: deps
	$(PY) -m ruff check postwarden tests tools
	$(PY) -m mypy

bench: deps
	$(PY) -m tests.bench

# The long soak: 5,000 messages while the daemons are killed 40 times (needs root).
soak: deps
	$(PY) -m tests.soak.run --messages 5000 --kills 40

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
