"""`mendbot`'s command line: the commands and options `python -m bot` (bot/__main__.py) understands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["command_line"]


class _Version(argparse.Action):
    """`--version`: the installed version, looked up only when asked (importlib.metadata costs every
    start ~15 ms and ~1 MB otherwise)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("mendbot")
        except importlib.metadata.PackageNotFoundError:  # a copy that was never installed
            version = "unknown"
        sys.stdout.write(f"mendbot {version}\n")
        parser.exit()


def command_line() -> argparse.ArgumentParser:
    """The parser of `mendbot`'s arguments: its commands and their options."""
    # --config works before or after the subcommand; SUPPRESS keeps a subcommand's absent flag
    # from overwriting one given earlier.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="config file (default: config.yaml)"
    )
    parser = argparse.ArgumentParser(
        prog="mendbot",
        description="A Discord bot that mends itself. Without a command: `run` when DISCORD_TOKEN "
        "is set, else `play`.",
        parents=[config],
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="{run,play,doctor,worker,adopt,attach}")
    commands.add_parser(
        "run", parents=[config], help="run on Discord (needs DISCORD_TOKEN)", description="Run on Discord."
    )
    play = commands.add_parser(
        "play",
        parents=[config],
        help="the local playground: a virtual Discord in the terminal (scriptable from stdin)",
        description="The bot and all its cogs in a virtual Discord; type lines, or pipe a script.",
    )
    play.add_argument(
        "--data-dir",
        default=None,  # a string: Path("") would be "." and put the database wherever mendbot runs
        help="where the playground keeps its database and logs (default: <data_dir>/playground)",
    )
    play.add_argument("--fresh", action="store_true", help="wipe the playground's data first")
    play.add_argument(
        "--demo",
        action="store_true",
        help="the whole fix loop with a scripted model, no key and no network, narrated "
        "(its own world in <data_dir>/demo, rebuilt each time)",
    )
    play.add_argument(
        "--interactive",
        action="store_true",
        help="with --demo: set the demo's scene, then let you drive it",
    )
    commands.add_parser(
        "doctor",
        parents=[config],
        help="check configuration, database, git, model and forge access",
        description="Check the setup, one line per check.",
    )
    adopt = commands.add_parser(
        "adopt",
        help="inspect a bot repository you already have and write its mendbot.yaml",
        description="Read a discord.py bot's repository (never running it) and write mendbot.yaml: its "
        "entry point, bot class, extensions, token variable and data files.",
    )
    adopt.add_argument("path", nargs="?", default=".", help="the bot's repository (default: here)")
    adopt.add_argument(
        "--entry",
        default=None,
        help='the command that starts your bot, when adopt cannot find it (e.g. "python launcher.py start")',
    )
    adopt.add_argument(
        "--no-check",
        action="store_true",
        help="write mendbot.yaml without starting your bot in the sandbox to see that it starts there",
    )
    attach = commands.add_parser(
        "attach",
        help="run your bot's own program with mendbot attached: mendbot attach -- python bot.py",
        description="Run a discord.py bot's own program with mendbot attached to the bot it starts "
        "(settings: mendbot.yaml, from `mendbot adopt`).",
    )
    attach.add_argument(
        "--config", type=Path, default=None, help="mendbot's settings for the bot (default: mendbot.yaml)"
    )
    attach.add_argument(
        "--play", action="store_true", help="run the bot in the local virtual Discord instead of Discord"
    )
    attach.add_argument(
        "--demo",
        action="store_true",
        help="with --play: mendbot fixes a fault it seeds in a scratch copy of your bot, with a scripted "
        "model (no key, no network; your files are not changed)",
    )
    attach.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="with --demo: where the demo keeps its scratch copy and state, wiped each time "
        "(default: ~/.cache/mendbot/attach-demo)",
    )
    attach.add_argument("program", nargs=argparse.REMAINDER, help="-- python bot.py [its arguments]")
    commands.add_parser(
        "worker",
        parents=[config],
        help="execute improvement runs from the run queue (improve.run_on: workers)",
        description="Take runs from the PostgreSQL run queue and execute them, improve.concurrency at "
        "a time, in a clone of the repository under <data_dir>/clone. No Discord.",
    )
    return parser
