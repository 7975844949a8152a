"""mendbot attached to a bot it did not build: settings from `mendbot.yaml`, services of its own, and a
life tied to the bot's.

`attach_to(bot)` is what both ways in call — the `mendbot` extension's `setup` (bot/attach) and the
runner of `mendbot attach -- python bot.py` (bot/tools/attach_run.py) — and doing it twice changes
nothing. It reads `mendbot.yaml` (or `MENDBOT_CONFIG`; its `repo_dir` and `data_dir` are read from
the file's directory), sends mendbot's own log records to its JSON log and warnings to the console as
one line each (`mendbot: …`; the program's logging stays as the program set it up), builds the services
on the bot's repository and attaches (bot/runtime/attachment.py), serving the dashboard when mendbot.yaml's
`dashboard.enabled` says so. When the bot has connected, mendbot's slash commands are
synced to the dev guild, and its committed HEAD is checked in the background (bot/runtime/base_check.py);
when it is ready, failed extensions are reported there; when the bot closes, the services close first.

A restart a deploy asked for closes the bot, which ends its program; the process then ends with the
restart exit code under a supervisor (`MENDBOT_SUPERVISED=1`), or starts the same program again.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from mendbot.kernel.log import configure_logging, get_logger
from mendbot.kernel.settings import ConfigError, Settings, load_settings
from mendbot.runtime.attachment import Attachment, attach
from mendbot.runtime.base_check import check_base_once
from mendbot.runtime.instrument import recording_of, wrapper_of
from mendbot.runtime.recording import Host
from mendbot.runtime.services import build_services
from mendbot.trust.host_files import bot_secrets
from mendbot.trust.redact import Redactor

if TYPE_CHECKING:
    from mendbot.dashboard.server import DashboardServer

__all__ = ["CONFIG_FILE", "attach_to", "host_settings"]

_log = get_logger(__name__)

CONFIG_FILE = "mendbot.yaml"


def host_settings(config_file: Path | None = None) -> Settings:
    """The settings of an attached bot: `config_file`, else `MENDBOT_CONFIG`, else ./mendbot.yaml; a
    relative `repo_dir` or `data_dir` is read from the file's directory. ConfigError when there is none."""
    path = config_file or Path(os.environ.get("MENDBOT_CONFIG") or CONFIG_FILE)
    if not path.is_file():
        raise ConfigError(
            f"config error: {path} does not exist — run `mendbot adopt` in your bot's repository first"
        )
    settings = load_settings(path)
    if settings.bot is None:
        raise ConfigError(
            f"config error: {path} has no `bot:` section saying how your bot runs — "
            "`mendbot adopt` writes one"
        )
    base = path.resolve().parent
    settings.repo_dir = settings.repo_dir if settings.repo_dir.is_absolute() else base / settings.repo_dir
    settings.data_dir = settings.data_dir if settings.data_dir.is_absolute() else base / settings.data_dir
    return settings


async def attach_to(
    bot: Host,
    settings: Settings | None = None,
    *,
    console_level: str = "WARNING",
    restart_at_exit: bool = True,
    connecting: bool | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Attachment:
    """Attach mendbot to a bot it did not build (once: a second call returns the first attachment).

    `console_level`: what of mendbot's log reaches the program's console. `restart_at_exit`: a restart a
    deploy asked for is applied when the program ends (off where the caller starts the program again
    itself, as the attach demo does). `connecting`: the bot is about to connect to Discord, so the
    services' background work waits for its gateway session, and mendbot's self-improvement half and
    cogs come up then (by default: it has none yet). `clock`: the services' clock (the playground's
    virtual one under `--play`), discord.py's by default."""
    found = recording_of(bot)
    if isinstance(found, Attachment):
        return found
    settings = settings or host_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(
        settings.log_dir,
        console_level=console_level,
        json_level=settings.level or "INFO",
        redactor=Redactor.from_settings(settings, also=bot_secrets(settings.bot, settings.repo_dir)),
        console_tracebacks=False,  # the program's console is its own: one line each, tracebacks in the log
        # ... in a line of mendbot's own, never structlog's key=value dump among the program's lines; what
        # #dev is told (an incident opened) is not said there again.
        brief=True,
        logger="mendbot",
    )
    if connecting is None:
        connecting = bot.user is None
    services = await build_services(
        settings, clock=clock or discord.utils.utcnow, connecting=connecting, mending=not connecting
    )
    mend = attach(bot, services, owns_services=True)
    mend.sampler.start()
    _closing_with(bot, mend, await _dashboard(mend) if settings.dashboard.enabled else None)
    _surfacing_once_connected(bot, mend)
    if connecting:  # on Discord: its committed HEAD is checked once it has connected (daemons wait for it)
        mend.services.daemons.start("base-check", check_base_once(mend))

    bot.add_listener(mend.on_ready, "on_ready")
    if restart_at_exit:
        atexit.register(_restart_if_asked, mend)
    _log.info("attached", bot=type(bot).__qualname__, repo=str(settings.repo_dir))
    return mend


async def _dashboard(mend: Attachment) -> DashboardServer | None:
    """The dashboard, served as mendbot.yaml's `dashboard:` says (jinja2 and the pages load only then)."""
    from mendbot.runtime.dashboard import dashboard_server

    server = dashboard_server(mend)
    if server is None or await server.start() is None:  # a port taken is logged by the server
        return None
    return server


def _closing_with(bot: Host, mend: Attachment, dashboard: DashboardServer | None) -> None:
    """mendbot's services (and its dashboard) close with the bot, before it: once the bot's own `close`
    has closed its gateway, its program's main task (`bot.run()`) may end, and the event loop with it,
    cancelling what is still closing — and a database left open holds the process's exit forever."""

    async def close(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            if dashboard is not None:
                await dashboard.stop()
            await mend.closed()
        except Exception:
            _log.exception("mendbot's services failed to close: closing the bot anyway")
        return await original(*args, **kwargs)

    bot.close = wrapper_of(bot.close, close)  # type: ignore[method-assign]


def _surfacing_once_connected(bot: Host, mend: Attachment) -> None:
    """Once the bot has its gateway session (every extension loaded by then): mendbot's
    self-improvement half and cogs, if not up yet, and its slash commands — and the bot's, copied —
    synced to the dev guild. The bot's own start waits for none of it, and Discord keeps the commands
    of the last sync meanwhile."""
    bot.add_listener(mend.start_surface, "on_connect")


def _restart_if_asked(mend: Attachment) -> None:
    """At the program's end, after a restart a deploy asked for: the restart code for a supervisor, or the
    same program again in this process."""
    if mend.restart_requested is None:
        return
    code = mend.services.settings.deploy.restart_exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get("MENDBOT_SUPERVISED") == "1":
        os._exit(code)
    print("mendbot: restarting your bot to apply an update", file=sys.stderr, flush=True)
    os.execv(sys.executable, list(sys.orig_argv))
