"""Smoke load: build a throwaway MendBot (never logged in) and load every extension.

`python -m bot.smoke` prints ✅/❌ per extension (a failure with its error; the traceback goes to
stderr) and exits 0 only if every extension loaded. The bot's services run on a temp data dir with no
config file, no `.env`, no health port and no repository (`repo_dir` is the temp dir, so start-up
cleans no worktrees), so nothing of the deployment is read or touched. The verify gate runs it in
the sandbox.

It imports whichever `bot` and `cogs` come first on `sys.path`: run in a worktree with
`PYTHONPATH=<worktree>` (as `bot.improve.verify` does), it checks the worktree's code, not the live one.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
import traceback
from pathlib import Path

__all__ = ["main", "smoke_load"]

EX_FAILED = 1


async def smoke_load(data_dir: Path) -> dict[str, str | None]:
    """Each discovered extension mapped to None (loaded) or the error that stopped it."""
    from bot.app import MendBot
    from bot.services import build_services
    from bot.settings import load_settings

    os.environ["MENDBOT_CONFIG"] = os.devnull
    settings = load_settings(data_dir=data_dir, repo_dir=data_dir, health={"enabled": False}, _env_file=None)
    services = await build_services(settings, watch_prompts=False)
    try:
        bot = MendBot(services)
        try:
            failures = await bot.load_extensions()
        finally:
            await bot.close()
        return {name: failures.get(name) for name in bot.extension_names}
    finally:
        await services.aclose()


def main() -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):  # a check's pipe may default to ASCII without a locale
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    with tempfile.TemporaryDirectory(prefix="mendbot-smoke-") as temp:
        data_dir = Path(temp) / "data"
        try:
            from bot.log import configure_logging

            configure_logging(data_dir / "logs", console_level="ERROR")
            results = asyncio.run(smoke_load(data_dir))
        except Exception as exc:
            # The bot could not even be built (a broken import in bot/, say): the traceback is the report.
            traceback.print_exc()
            print(f"❌ could not build the bot: {type(exc).__name__}: {exc}")
            return EX_FAILED
    for name, error in results.items():
        print(f"✅ {name}" if error is None else f"❌ {name} — {error}")
    failed = sum(error is not None for error in results.values())
    print(f"{len(results) - failed}/{len(results)} extensions loaded")
    return EX_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
