"""`mendbot attach --play --demo -- python bot.py`: the fix loop on a bot someone else wrote, on a scratch
copy of its repository, with the scripted demo model — and the developer's own tree left as it was."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.hosts import host_repo
from tests.harness.wheel import installed_wheel

_DROPPED = ("MENDBOT_CONFIG", "DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN")

# The shapes as their authors would have them with no known fault: the demo's premise. (The attach tests'
# copies each carry a fault of their own, which the proof's neighbouring calls would rightly find.)
WITHOUT_KNOWN_FAULT = {
    "shelf": (
        "cogs/books.py",
        "return 100 * copies // total",
        "return 100 * copies // total if total else 0",
    ),
    "single": (
        "main.py",
        "return round(bill * 1.15) // people",
        "return round(bill * 1.15) // max(people, 1)",
    ),
}


def _bot(tmp_path: Path, shape: str) -> Path:
    """The shape's repository, its known fault mended and committed, as a developer would have it."""
    repo = host_repo(tmp_path, shape)
    name, fault, mended = WITHOUT_KNOWN_FAULT[shape]
    path = repo / name
    assert fault in path.read_text()
    path.write_text(path.read_text().replace(fault, mended))
    _git(repo, "commit", "-qam", "no known fault")
    return repo


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def _demo(repo: Path, home: Path, *program: str) -> tuple[int, str]:
    """Run the demo as the developer would, in their repository: no key, no token, no config."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        str(installed_wheel().mendbot),
        "attach",
        "--play",
        "--demo",
        "--",
        *program,
        cwd=repo,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode is not None
    return process.returncode, out.decode()


def _in_order(out: str, steps: list[str]) -> None:
    """Each step is in the output after the one before it."""
    at = 0
    for step in steps:
        found = out.find(step, at)
        assert found != -1, (step, out[at : at + 3000])
        at = found + len(step)


@dataclass(frozen=True)
class Shape:
    name: str
    program: list[str]
    call: str  # what the demo types
    answer: str  # what the bot answers, before the seed and after the fix
    file: str  # where the command's code is
    applied: str  # how the fix was applied


SHAPES = [
    Shape(
        "shelf",
        ["python", "bot.py"],
        "!add demo 2",
        "shelved 2 × demo",
        "cogs/books.py",
        "reloaded cogs.books",
    ),
    Shape("single", ["python", "main.py"], "$tip 2 2", "each pays 1", "main.py", "restarted your program"),
]


@pytest.mark.cli
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.name)
async def test_the_demo_fixes_a_fault_it_seeds_in_your_bot_and_leaves_your_tree_alone(
    tmp_path: Path, shape: Shape
) -> None:
    """On a Bot subclass with a cogs package (the fix reloads its extension) and on a single-file bot (the
    fix restarts its program): the command answers, the demo says where it seeded the fault, the failures
    are announced, "fix this" proves a fix by replay, "ship it" merges and applies it, the command answers
    as before and the watch resolves the run; exit 0. The developer's repository keeps its HEAD and a
    clean status, and the scratch copy ends as it began: the fix took out exactly the seeded line."""
    repo = _bot(tmp_path, shape.name)
    head = _git(repo, "rev-parse", "HEAD")
    call, answer, file, program = shape.call, shape.answer, shape.file, shape.program
    original = (repo / file).read_text()
    home = tmp_path / "home"

    code, out = await _demo(repo, home, *program)

    assert code == 0, out[-4000:]
    label = call.split(maxsplit=1)[0]
    _in_order(
        out,
        [
            f"> {call}",
            answer,
            f"demo: seeded a fault in `{label}` ({file}:",
            ") in a scratch copy — your files are not changed",
            "Something went wrong on my side (ZeroDivisionError)",
            "Incident #1: the `",
            "reply m",
            "🧪 Proof: ✅ **proven by replay**",
            "ship it",
            "🚀 Merged",
            f"Shipped ({shape.applied})",
            f"> {call}",
            answer,
            "✅ Run #1: quiet for 1 min after deploy — resolved.",
            f"`{call}` answers again: {answer}. For real: `mendbot adopt`, then "
            f"`mendbot attach -- {' '.join(program)}`.",
        ],
    )
    assert "Traceback" not in out
    assert _git(repo, "rev-parse", "HEAD") == head
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / file).read_text() == original
    scratch = home / "cache" / "mendbot" / "attach-demo" / "demo-repo"
    assert (scratch / file).read_text() == original  # seeded, then fixed: back to the developer's code
    log = _git(scratch, "log", "--format=%s")
    assert "mendbot demo: a fault seeded in" in log


def test_the_demo_refuses_what_attach_refuses_in_one_line(tmp_path: Path) -> None:
    """Not a git repository, a dirty tree, no bot, and `--demo` without `--play`: one line each, exit 78,
    nothing written to the tree."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env |= {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def demo(where: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed_wheel().mendbot), "attach", *flags, "--", "python", "bot.py"],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "bot.py").write_text("print('hi')\n")
    dirty = host_repo(tmp_path, "shelf")
    (dirty / "bot.py").write_text((dirty / "bot.py").read_text() + "# unsaved\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bot.py").write_text("print('no bot here')\n")
    _git(empty, "init", "-q", "-b", "main")
    _git(empty, "add", "-A")
    _git(empty, "commit", "-qm", "a script")

    cases = [
        (plain, ("--play", "--demo"), "is not a git repository"),
        (dirty, ("--play", "--demo"), "has uncommitted changes (bot.py) — commit them first"),
        (empty, ("--play", "--demo"), "no discord.py bot found"),
        (empty, ("--demo",), "--demo runs in the local virtual Discord"),
    ]
    for where, flags, said in cases:
        done = demo(where, *flags)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 78, (where, done.stdout, done.stderr)
        assert len(lines) == 1 and said in lines[0], (where, done.stderr)
        assert done.stdout == ""
    assert _git(dirty, "status", "--porcelain") == " M bot.py\n"
    assert sorted(p.name for p in plain.iterdir()) == ["bot.py"]


OOPS_BOT = {
    "bot.py": '''"""A bot with its own error handler, which logs to its console."""

import logging
import os

import discord
from discord.ext import commands

logging.basicConfig(level=logging.INFO)


class OopsBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)

    async def setup_hook(self) -> None:
        await self.load_extension("cogs.fun")

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        await ctx.send("Oops, something went wrong.")


if __name__ == "__main__":
    OopsBot().run(os.environ["DISCORD_TOKEN"])
''',
    "cogs/__init__.py": "",
    "cogs/fun.py": '''"""!fortune."""

from discord.ext import commands


class Fun(commands.Cog):
    @commands.command()
    async def fortune(self, ctx: commands.Context) -> None:
        await ctx.send("You will ship it.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Fun())
''',
}


@pytest.mark.cli
async def test_the_demo_on_a_bot_that_answers_its_own_failures(tmp_path: Path) -> None:
    """A bot whose error handler says "Oops, something went wrong.": the proof shows that reply on the base
    as the failure it is (❌ with the error raised), not "✅ answered"; once the fix is shipped, the command
    answering again does not escalate the incident from the failures before the fix; and the last line
    ends one sentence with one full stop, however the bot's answer ends."""
    repo = tmp_path / "oops"
    for name, text in OOPS_BOT.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a bot")

    code, out = await _demo(repo, tmp_path / "home", "python", "bot.py")

    assert code == 0, out[-4000:]
    proof = next(line for line in out.splitlines() if line.startswith("• replay `!fortune`"))
    assert "base ❌ ZeroDivisionError in `fortune`, its error reply “Oops, something went wrong.”" in proof, (
        proof
    )
    shipped = out[out.index("🚀 Merged") :]
    assert "failing" not in shipped and "🔥" not in shipped, shipped  # not escalated by the failures before
    assert "answers again: You will ship it. For real:" in out and ".." not in out.splitlines()[-1], out[
        -600:
    ]
