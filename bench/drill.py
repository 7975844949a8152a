"""Fire-drill benchmark: how long the repair loop takes to notice and to propose, as a drill times it.

Prints `name value unit` lines (diagnostics go to stderr):

- `drill_detect_s`: from the drill's start (the failpoint armed, its failing calls recorded) to an
  incident open on them — the detector's and the incident service's share of the loop. The drill
  looks every `poll_s` (50 ms), so this figure cannot be below that.
- `drill_propose_s`: from the drill's start to the proposal open: the announcement, the fix run the
  drill requests (evidence, the real bundled CLI against the model double answering at once, three
  sessions), the checks in the sandbox (a trivial `python -c pass`, so the figure is the pipeline's
  own cost), the proof and the forge. The drill then closes the proposal (it never merges).

Both are the drill's own stage times (`DrillReport`), median of `ROUNDS` drills, each on a fresh
copy of the repository and a fresh database; the services run without Discord (a recording
announcer stands in for the dev channel). Run from the repo root: `.venv/bin/python bench/drill.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull

from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.observe.incident import Incident  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402

ROUNDS = 3
_ids = itertools.count(1000)


class _Announcer:
    """The dev channel's stand-in: every announcement gets a message id at once."""

    async def announce(self, incident: Incident) -> tuple[int, int] | None:
        return 999, next(_ids)

    async def update(self, incident: Incident) -> None:
        return None


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _one(base: Path) -> tuple[float, float]:
    from mendbot.runtime.services import build_services
    from tests.harness.discord import make_settings
    from tests.harness.model_double import ModelDouble, text, tool_use
    from tests.harness.repo import copy_of_bot

    repo = copy_of_bot(base / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            base / "data",
            repo_dir=repo,
            anthropic_api_key="bench-key",
            anthropic_base_url=model.base_url,
            improve={"checks": ["python -c pass"], "max_attempts": 1},
            observe={"announce_new_fingerprints": False},
        )
        target = settings.data_dir.resolve() / "worktrees" / "run-1" / "cogs" / "dice.py"
        model.script(
            text('```json\n{"root_cause": "a drill", "files": ["cogs/dice.py"]}\n```'),
            text('```json\n{"files": ["cogs/dice.py"], "changes": [], "risk": "low"}\n```'),
            tool_use(
                "Edit",
                {
                    "file_path": str(target),
                    "old_string": "Roll dice written like",
                    "new_string": "Roll the dice written like",
                },
            ),
            text("done"),
        )
        services = await build_services(settings, watch_prompts=False)
        try:
            services.incidents.announcer = _Announcer()
            await services.drill.start()
            report = await services.drill.wait()
            assert report is not None
            if not report.ok:
                raise AssertionError(report.render())
            detect, propose = report.took("detect"), report.took("propose")
            assert detect is not None and propose is not None
            return detect, propose
        finally:
            await services.aclose()


async def _rounds(tmp: Path) -> None:
    detects, proposes = [], []
    for index in range(ROUNDS):
        detect, propose = await _one(tmp / f"drill-{index}")
        _note(f"drill {index + 1}: detect {detect:.3f} s, propose {propose:.2f} s")
        detects.append(detect)
        proposes.append(propose)
    print(f"drill_detect_s {statistics.median(detects):.3f} s", flush=True)
    print(f"drill_propose_s {statistics.median(proposes):.2f} s", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-") as name:
        tmp = Path(name)
        configure_logging(tmp / "logs", console_level="CRITICAL", redactor=Redactor())
        asyncio.run(_rounds(tmp))


if __name__ == "__main__":
    main()
