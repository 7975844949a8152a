"""`mendbot play --demo`: the whole fix loop with no key and no network, narrated.

The demo builds a world of its own under `<data_dir>/demo`: a git repository holding a copy of the
bot with one more cog, `/fortune`, whose fault is seeded on purpose (the cog exists only there, so
it is loaded only in the demo), and the bot's state beside it. The bot runs on that repository in
the playground's virtual Discord; its model is the demo's scripted one (`mendbot.tools.demo_agent`),
reached through the bot's own gateway by the real bundled Claude Code CLI in the real sandbox.
Nothing is shortcut: the run gathers evidence, edits a worktree, passes the checks and the proof,
waits for "ship it", merges, reloads the cog and watches, and `/rollback` reverts it.

In script mode (stdin not a terminal, or no `--interactive`) `DemoScript` plays the story line by
line — failure → announcement → "fix this" → evidence and fix → proof → "ship it" → reload → watch →
rollback — printing what a newcomer would see, and the run is the same every time. With
`--interactive` the same world is handed to the newcomer at the first step.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendbot.kernel.git import git
from mendbot.tools.demo_agent import BUG

if TYPE_CHECKING:
    import discord

    from mendbot.tools.playground import Playground

__all__ = [
    "DEMO_CHECK",
    "DEMO_COG",
    "DemoScript",
    "demo_overrides",
    "interactive_hint",
    "is_announcement",
    "latest_alias",
    "prepare_repository",
]

PRODUCT = Path(__file__).resolve().parents[2]
REPO_NAME = "demo-repo"
CHECK = "python -m pytest -q -p no:cacheprovider checks/test_fortune.py"
WATCH_S = 60

DEMO_COG = f'''"""/fortune: a fortune cookie — the demo's cog, with a fault seeded on purpose."""

from __future__ import annotations

from discord.ext import commands

from mendbot.runtime.app import MendBot

FORTUNES = (
    "A small fix, well proven, beats a big one.",
    "Read the traceback twice; it is telling you the truth.",
    "The bug you can reproduce is the bug you can fix.",
)


def fortune_for(name: str) -> str:
    """The fortune of a name: the same name always draws the same cookie."""
    {BUG}


class Fortune(commands.Cog):
    @commands.hybrid_command(name="fortune", description="Draw a fortune cookie.")  # type: ignore[arg-type]
    async def fortune(self, ctx: commands.Context[MendBot]) -> None:
        """Draw your fortune cookie."""
        await ctx.send(f"🥠 {{fortune_for(ctx.author.name)}}")


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Fortune())
'''

DEMO_CHECK = '''"""The check a fix of /fortune must pass."""

from cogs.fortune import FORTUNES, fortune_for


def test_every_name_draws_a_fortune() -> None:
    for name in ("alice", "mallory", "x"):
        assert fortune_for(name) in FORTUNES
'''

_COPIED = ("bot", "cogs", "prompts", "pyproject.toml")


async def prepare_repository(directory: Path) -> Path:
    """A fresh git repository at `directory/demo-repo`: the bot, plus the demo's cog and its check."""
    repo = directory / REPO_NAME
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in _COPIED:
        source = PRODUCT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, repo / name)
    (repo / "cogs" / "fortune.py").write_text(DEMO_COG)
    (repo / "checks").mkdir()
    (repo / "checks" / "test_fortune.py").write_text(DEMO_CHECK)
    (repo / ".gitignore").write_text("__pycache__/\n*.pyc\n")
    await git(repo, "init", "-q", "-b", "main")
    await git(repo, "add", "-A")
    await git(repo, "commit", "-q", "-m", "The demo: mendbot with a /fortune cog that always fails")
    return repo


def demo_overrides(directory: Path, model_url: str) -> dict[str, Any]:
    """Settings for the demo's bot (over the config file's): its repository, model, checks and windows."""
    return {
        "repo_dir": directory / REPO_NAME,
        "anthropic_api_key": "demo-key-not-a-secret",
        "anthropic_base_url": model_url,
        "health": {"enabled": False},
        "improve": {
            "checks": [CHECK],
            "max_attempts": 1,
            # The newcomer asks for the fix: the bot's own investigation would take the incident first.
            "autonomy": "off",
            "check_timeout_s": 120,
        },
        "deploy": {"watch_window_s": WATCH_S, "watch_hand_edits": False},
        # A whole agent run is one line of the script: give it the time a loaded machine needs.
        "playground": {"settle_timeout_s": 240},
    }


# The story: (narration, lines). `{announcement}` and `{proposal}` are the aliases the bot's messages got.
STORY: list[tuple[str, list[str]]] = [
    (
        "A guild with a /fortune command that fails for everyone (a fault seeded on purpose).",
        ["@mallory", "!fortune", "@alice", "!fortune", "!fortune"],
    ),
    (
        "mendbot noticed: the incident is announced in #dev, with ways to act.",
        ["#dev", "wait"],
    ),
    (
        "An allow-listed developer replies “fix this”. The run gathers evidence, the coding agent fixes "
        "a worktree in the sandbox, the checks pass, and the recorded failing calls are replayed as proof.",
        ["reply {announcement} fix this"],
    ),
    (
        "Nothing ships without a human: mallory is not allow-listed, alice is.",
        ["@mallory", "reply {proposal} ship it", "@alice", "reply {proposal} ship it"],
    ),
    ("Merged and hot-reloaded, no restart: /fortune works.", ["#general", "!fortune"]),
    (
        f"The watch: {WATCH_S} s of (virtual) time with no new failure, and the run is resolved.",
        ["#dev", f"wait {WATCH_S + 1}s"],
    ),
    (
        "Changed your mind? The emergency rollback reverts the merge and reloads at once.",
        ["/rollback 1 now=true", "#general", "!fortune"],
    ),
]
INTRO = (
    "mendbot demo — the whole fix loop, with a scripted model and no network. "
    "The bot's repository for this demo: {repo}"
)
OUTRO = (
    "That was the loop. Drive it yourself: `mendbot play --demo --interactive` "
    "(or `make demo-interactive`); your own cogs: README, “Your own cog”."
)


class DemoScript:
    """Plays `STORY` in a playground, narrating each step; the exit status of its lines."""

    def __init__(self, playground: Playground) -> None:
        self.playground = playground

    async def run(self, *, steps: int | None = None) -> int:
        """Play the story (its first `steps` steps only, for `--interactive`); 0 when every line ran."""
        playground = self.playground
        world = playground.world
        self._say(INTRO.format(repo=world.bot.services.settings.repo_dir))
        status = 0
        for number, (narration, lines) in enumerate(STORY[:steps], start=1):
            self._say(f"\n── {number}. {narration}")
            for line in lines:
                status |= await playground.run_lines([self._fill(line)])
        await world.quiesce()
        playground.print_changes()
        if steps is None:
            self._say(f"\n{OUTRO}")
        return status

    def _fill(self, line: str) -> str:
        if "{announcement}" in line:
            return line.format(announcement=latest_alias(self.playground, is_announcement))
        if "{proposal}" in line:
            return line.format(proposal=latest_alias(self.playground, is_proposal))
        return line

    def _say(self, text: str) -> None:
        self.playground.out.write(text + "\n")
        self.playground.out.flush()


def latest_alias(playground: Playground, wanted: Callable[[discord.Message], bool]) -> str:
    """The short id of the bot's latest message that is `wanted` ("last" when there is none: the line
    using it then says what went wrong)."""
    world = playground.world
    me = world.bot.user
    found = [
        message
        for channel in world.all_channels()
        for message in channel.history()
        if me is not None and message.author.id == me.id and wanted(message)
    ]
    if not found:
        return "last"
    return playground.alias(max(found, key=lambda m: m.id).id)


def interactive_hint(script: DemoScript) -> str:
    """What the newcomer can type once the scene is set."""
    announcement = latest_alias(script.playground, is_announcement)
    return (
        "\nYour turn — you are alice (allow-listed) in #dev. Try, one line at a time:\n"
        f"  reply {announcement} fix this       (or react {announcement} 🛠, or /fix)\n"
        "  /runs   /run 1   @mendbot status   (answered while the run works)\n"
        "  reply <the proposal's id> ship it\n  #general\n  !fortune\n"
        f"  wait {WATCH_S + 1}s   /rollback 1 now=true   help   quit"
    )


def is_announcement(message: discord.Message) -> bool:
    """An incident's announcement in #dev."""
    return any("Incident #" in (embed.title or "") for embed in message.embeds)


def is_proposal(message: discord.Message) -> bool:
    """A run's proposal, ready for "ship it"."""
    return "fix ready for review" in message.content
