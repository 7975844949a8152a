"""Replay entry: run recorded invocations against this checkout's cogs in a throwaway virtual Discord.

`python -m bot.improve.replay_entry '<json>'` is what `bot.improve.replay` runs inside the sandbox, with
`PYTHONPATH=<worktree>`, so `bot` and the cogs imported here are the worktree's code. The JSON names the
extensions to load and the invocations (`{"key", "kind", "name", "options"}`); each is sent as alice in
`#general` of a fresh simcord guild, the bot is let finish, and the action record the bot itself made
for that kind is the result: ok, error type and message, fingerprint and duration. One JSON object is
printed on the last line of stdout: `{"results": [...], "loaded": {...}}`. Like the smoke load, the bot
runs on a temp data dir with no config file, no `.env`, no health port and no repository.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

__all__ = ["extension_for", "main", "replay"]

EX_FAILED = 1


def extension_for(path: str) -> str | None:
    """The extension module that holds a handler file (`cogs/dice.py` → `cogs.dice`; a cog package's
    submodule → the package), or None when no module on the way has a `setup`."""
    parts = path.removesuffix(".py").split("/")
    if parts and parts[-1] == "__init__":
        parts.pop()
    while parts:
        name = ".".join(parts)
        try:
            module = importlib.import_module(name)
        except Exception:
            module = None
        if module is not None and callable(getattr(module, "setup", None)):
            return name
        parts.pop()
    return None


async def replay(
    data_dir: Path, handler_paths: list[str], invocations: list[dict[str, Any]]
) -> dict[str, Any]:
    """Load the extensions of `handler_paths`, send each invocation, return what the bot recorded."""
    from bot.app import MendBot
    from bot.observe.records import ActionRecord
    from bot.playground import virtual_world
    from bot.services import build_services
    from bot.settings import load_settings

    os.environ["MENDBOT_CONFIG"] = os.devnull
    settings = load_settings(
        data_dir=data_dir,
        repo_dir=data_dir,
        health={"enabled": False},
        deploy={"watch_hand_edits": False},
        _env_file=None,
    )
    extensions = sorted({name for path in handler_paths if (name := extension_for(path)) is not None})
    services = await build_services(settings, watch_prompts=False)
    records: list[ActionRecord] = []
    services.recorder.subscribe(records.append)
    results: list[dict[str, Any]] = []
    try:
        bot = MendBot(services, extensions=extensions)
        async with virtual_world(bot, settle_timeout=60, real_clock=False) as world:
            user = world.users[settings.playground.users[0].name]
            for invocation in invocations:
                records.clear()
                kind: str = invocation["kind"]
                options: dict[str, Any] = invocation.get("options") or {}
                sent_error = None
                try:
                    if kind.startswith("app:"):
                        await user.slash(world.general, invocation["name"].lstrip("/"), **options)
                    else:
                        await user.send(
                            world.general, str(options.get("text") or options.get("content") or "")
                        )
                    await world.quiesce()
                except Exception as exc:  # simcord refuses an unknown command: that is a result too
                    sent_error = f"{type(exc).__name__}: {exc}"
                ran = [record for record in records if record.kind == kind]
                if ran:
                    record = ran[0]
                    results.append(
                        {
                            "key": invocation["key"],
                            "ran": True,
                            "ok": record.ok and not record.extra.get("user_error"),
                            "error_type": record.error_type,
                            "error": record.error_message,
                            "fingerprint": record.fingerprint,
                            "duration_ms": record.duration_ms,
                        }
                    )
                else:
                    results.append(
                        {
                            "key": invocation["key"],
                            "ran": False,
                            "ok": False,
                            "error_type": "NotHandled",
                            "error": sent_error or f"nothing handled it: no {kind} was recorded",
                            "fingerprint": None,
                            "duration_ms": 0.0,
                        }
                    )
        return {"results": results, "extensions": extensions}
    finally:
        await services.aclose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    request = json.loads(args[0])
    with tempfile.TemporaryDirectory(prefix="mendbot-replay-") as temp:
        data_dir = Path(temp) / "data"
        try:
            from bot.log import configure_logging

            configure_logging(data_dir / "logs", console_level="CRITICAL")
            outcome = asyncio.run(replay(data_dir, request["handlers"], request["invocations"]))
        except Exception as exc:
            traceback.print_exc()
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return EX_FAILED
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
