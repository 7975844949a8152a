"""Write the bytecode the sandbox cannot: run once after every install (`make`, the Docker image, run.sh).

Every check, proof and replay runs in the sandbox with the venv bound read-only and
`PYTHONDONTWRITEBYTECODE=1` (`mendbot.trust.sandbox`), so whatever bytecode is missing there is compiled
again on every run. The costly part is pytest's: it rewrites the asserts of every installed plugin
(simcord, pytest-asyncio, hypothesis, anyio, ...) at start and caches the result beside them, in
`__pycache__/*-pytest-<version>.pyc`. Without that cache one `python -m pytest` of a single test costs
about 1.8 s of CPU; with it, about 0.45 s. Hosts that set `PYTHONDONTWRITEBYTECODE` themselves (many
container images and CI machines do) never write either cache.

    python -m mendbot.tools.warm          # compile the bot and cogs, then cache pytest's rewritten plugins
    python -m mendbot.tools.warm --tests  # and the suite's own modules (`make`'s dev install)

The suite's modules are rewritten the same way by every pytest process that collects them: each worker
of `make test` and `make check` spends about 7 s of CPU collecting without that cache, under 4 s with
it. Test files edited since are rewritten again, as without the cache.

It writes only into the venv and the checkout's own `__pycache__` directories (ignored by git), and
stale files are harmless: Python and pytest check each one against its source before using it.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parents[2]
_NO_TESTS_COLLECTED = 5


def main(argv: list[str] | None = None) -> int:
    tests = "--tests" in (sys.argv[1:] if argv is None else argv)
    for package in ("bot", "cogs"):
        if (_ROOT / package).is_dir():
            compileall.compile_dir(_ROOT / package, quiet=1)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTEST_ADDOPTS"] = ""
    with tempfile.TemporaryDirectory(prefix="mendbot-warm-") as empty:
        # Collecting an empty directory loads (and so rewrites and caches) every installed plugin. Its
        # own empty pytest.ini ends pytest's search upward: no configuration in /tmp or above applies.
        (Path(empty) / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
            cwd=empty,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    if done.returncode not in (0, _NO_TESTS_COLLECTED):
        # Only slower, not broken: the install goes on, and says so.
        sys.stderr.write(
            "mendbot warm: pytest could not load its plugins, so sandboxed checks will rewrite them on every"
            f" run:\n{done.stderr[-2000:]}"
        )
    if tests and (_ROOT / "tests").is_dir():
        # A test module that fails to import is the suite's to report, not this: it is only not cached.
        subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
