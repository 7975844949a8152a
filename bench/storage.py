"""Storage-fault benchmark: what a locked database costs a user, with the default `storage.*` settings.

Prints one `name value unit` line per figure:

- `save_given_up_s`: how long `/remind` takes to answer "I couldn't save that" while another
  process holds the database's write lock for good (the bound: write_attempts × busy_timeout plus
  the backoffs).
- `save_ride_out_s`: how long `/remind` takes to answer "Okay" when the other process lets go of
  the lock 1 s after the command was sent (the cost of riding out a short lock).
- `records_dropped_short_lock`: action records dropped when 500 are recorded during that 1 s lock
  (the batch retries should keep all of them: expected 0).

The bot runs in the virtual Discord (the playground's), in a temp dir; the lock is held by a
separate Python process with `BEGIN EXCLUSIVE`, as in the tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

from bot.kernel.log import configure_logging  # noqa: E402
from bot.kernel.settings import load_settings  # noqa: E402
from bot.runtime.app import MendBot  # noqa: E402
from bot.runtime.services import build_services  # noqa: E402
from bot.tools.playground import VirtualWorld, virtual_world  # noqa: E402
from bot.trust.redact import Redactor  # noqa: E402

_HOLDER = """
import select, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def _emit(name: str, value: object, unit: str) -> None:
    print(f"{name} {value} {unit}", flush=True)


async def _lock(db_path: Path, seconds: float) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(db_path),
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    await process.stdout.readline()
    return process


async def _remind(world: VirtualWorld, text: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = await world.users["alice"].slash(world.general, "remind", when="10m", text=text)
    assert result.response is not None
    return time.perf_counter() - started, result.response.content


async def measure(world: VirtualWorld, db_path: Path) -> None:
    holder = await _lock(db_path, 120)
    elapsed, answer = await _remind(world, "given up")
    assert "couldn't save" in answer, answer
    assert holder.stdin is not None
    holder.stdin.close()
    await holder.wait()
    _emit("save_given_up_s", round(elapsed, 2), "s")
    await world.quiesce()

    recorder = world.bot.services.recorder
    dropped_before = sum(recorder.shed.values())
    holder = await _lock(db_path, 1.0)
    for _ in range(500):
        recorder.record("bench:spam", "bench", ok=True, duration_ms=0)
    elapsed, answer = await _remind(world, "ridden out")
    assert "Okay" in answer, answer
    await holder.wait()
    await world.quiesce()
    _emit("save_ride_out_s", round(elapsed, 2), "s")
    _emit("records_dropped_short_lock", sum(recorder.shed.values()) - dropped_before, "records")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        configure_logging(data / "logs", console_level="CRITICAL", redactor=Redactor())
        settings = load_settings(data_dir=data, repo_dir=Path(tmp), health={"enabled": False}, _env_file=None)
        services = await build_services(settings, watch_prompts=False)
        bot = MendBot(services)
        try:
            async with virtual_world(bot, settle_timeout=120) as world:
                await measure(world, settings.db_path)
        finally:
            await services.aclose()


if __name__ == "__main__":
    asyncio.run(main())
