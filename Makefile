# Two commands for a new user:  `make run`  and  `make test`.  Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: setup runtime browser run play demo demo-interactive doctor test check lint quick-lint durations bench bench-short clean

# pytest's workers (pytest-xdist): most of the suite waits on subprocesses (the Claude Code CLI, the
# sandbox, bot processes), so more workers than cores pays off. Tests are handed out two at a time,
# the slow ones first (tests/conftest.py), so the workers finish together.
WORKERS ?= 4
# A test still running after 15 minutes (the longest took 7.7 on a loaded machine) has hung: it fails,
# with every thread's stack printed, and the run goes on to the end instead of waiting for ever.
# The run's /tmp is a tmpfs of its own where the machine allows (tests/harness/in_tmpfs.py): the suite
# makes and deletes hundreds of thousands of files, and on a disk the kernel's work for them is a large
# part of a run.
PYTEST  := $(BIN)/python -m tests.harness.in_tmpfs $(BIN)/pytest -n $(WORKERS) --maxschedchunk 2 --timeout 900

# Two installs: the runtime (`mendbot`, the playground, the demo) and the dev extra on top (tests,
# linters). A newcomer's first `make run` waits only for the first; `make test` adds the second.
# After each, mendbot.tools.warm writes the bytecode the sandbox's read-only venv cannot (pytest's
# rewritten plugins: ~1.4 s of CPU on every sandboxed check, proof and replay without it); after the
# dev install, the suite's rewritten modules too (~3 s of CPU for each pytest worker without them).
# A venv made for `make test` gets both in one pip run (one resolution instead of two). pip runs
# under bot/tools/install_progress.py, which says what is happening (the first install takes minutes).
define VENV_READY
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mendbot needs Python 3.11 or newer")'
	@if [ ! -x $(BIN)/pip ]; then echo "mendbot: creating .venv with $(PYTHON)"; $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip; fi
endef

$(STAMP): pyproject.toml
	$(VENV_READY)
	@$(BIN)/python bot/tools/install_progress.py $(BIN)/pip install -e ".[all]"
	$(BIN)/python -m mendbot.tools.warm
	@touch $(STAMP)

# The real public bots the tests attach mendbot to (../shared/realbots/, beside the clone, where it is)
# bring what they need to run: installed with the dev extra (tests/realbots/requirements.txt).
REALBOTS := $(if $(wildcard ../shared/realbots),-r tests/realbots/requirements.txt)

$(DEV): pyproject.toml tests/realbots/requirements.txt
	$(VENV_READY)
	@$(BIN)/python bot/tools/install_progress.py $(BIN)/pip install -e ".[dev]" $(REALBOTS)
	$(BIN)/python -m mendbot.tools.warm --tests
	@touch $(STAMP) $(DEV)

runtime: $(STAMP)
setup: $(DEV)

# A bot that can fix itself runs improve.checks (this project's tests and linters) on every fix, so
# with a Discord token or a model key (in the environment or .env) `make run` installs everything;
# the keyless playground and the demo (whose own check needs only pytest) need the runtime alone.
KEYED := $(strip $(DISCORD_TOKEN)$(ANTHROPIC_API_KEY)$(shell grep -Eqs '^(DISCORD_TOKEN|ANTHROPIC_API_KEY)=[^[:space:]]' .env && echo 1))
RUN_SETUP := $(if $(KEYED),setup,runtime)

# Debian's chromium, for the dashboard's browser tests (tests/test_dashboard_browser.py, Playwright
# drives it by its path), with the emoji font the pages' icons need: `make test` installs them where
# they are missing and apt-get can (as root); elsewhere those tests are skipped and say why. `make run`
# never needs them.
browser:
	@if { ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'color emoji'; } \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and an emoji font (apt-get) for the dashboard's browser tests"; \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null ) \
			|| echo "chromium could not be installed: the dashboard's browser tests will be skipped"; \
	fi

run: $(RUN_SETUP)          ## run on Discord if DISCORD_TOKEN is set, else the local playground
	$(BIN)/mendbot

play: $(RUN_SETUP)
	$(BIN)/mendbot play

demo: runtime         ## the whole fix loop, narrated: no key, no network
	$(BIN)/mendbot play --demo </dev/null

demo-interactive: runtime
	$(BIN)/mendbot play --demo --interactive

doctor: $(RUN_SETUP)
	$(BIN)/mendbot doctor

lint: quick-lint
	$(BIN)/mypy

quick-lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# mypy (half a minute on a fresh clone) type-checks beside the tests, which leave a core idle part of
# the time; its report follows the tests', and either failing fails the target.
define BESIDE_MYPY
	@$(BIN)/mypy > $(VENV)/mypy.out 2>&1 & typing=$$!; \
	$(1); tests=$$?; \
	wait $$typing; typed=$$?; \
	echo "$(BIN)/mypy"; cat $(VENV)/mypy.out; \
	exit $$(( tests ? tests : typed ))
endef

test: quick-lint browser  ## ruff, mypy and the whole suite: on SQLite, and on PostgreSQL what differs between engines
	$(call BESIDE_MYPY,$(PYTEST) --durations=20)

# The order tests are handed out in (the longest first) comes from a whole run's durations.
durations: setup browser  ## run the suite and write tests/durations.txt from how long each test took
	@$(PYTEST) --durations=0 --durations-min=1 > $(VENV)/durations.out; tests=$$?; \
	tail -n 3 $(VENV)/durations.out; \
	$(BIN)/python -m tests.harness.durations $(VENV)/durations.out > tests/durations.txt; \
	exit $$tests

check: quick-lint browser ## the inner loop: lint and every test that does not start the Claude Code CLI, on SQLite
	$(call BESIDE_MYPY,MENDBOT_TEST_DATABASE=sqlite $(PYTEST) -m 'not cli' -x)

# The benches, each a script printing `name value unit` lines (bench/*.py; bench/sizes.py and
# bench/minimal_bot.py are their helpers). `make bench` runs them at full size; `make bench-short` runs
# each once in its short mode (small sizes, one round), which CI runs after `make test`, so a change that
# breaks a bench fails the change rather than whoever runs `make bench` next.
BENCHES := startup observe pipeline deploy redact sandbox storage audit discord_start localise scale \
	dashboard stop attach drill install

bench: setup
	@for name in $(BENCHES); do echo "$(BIN)/python bench/$$name.py"; $(BIN)/python bench/$$name.py || exit 1; done

bench-short: setup
	@for name in $(BENCHES); do echo "$(BIN)/python bench/$$name.py --short"; \
		$(BIN)/python bench/$$name.py --short || exit 1; done

clean:
	rm -rf $(VENV) .mendbot-wheel-* .mypy_cache .ruff_cache .pytest_cache
