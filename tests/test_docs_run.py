"""Every code block in README.md and docs/*.md says what it is, and each is run or checked as that kind.

The kinds and what happens to each are in tests/docblocks.py; a block of no known kind fails, so a
command or transcript cannot be added to the docs without a test executing it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.kernel.settings import ConfigError, load_settings
from mendbot.tools.command_line import command_line
from tests.docblocks import (
    DOCS,
    KINDS,
    REPO,
    SYSTEM_PROGRAMS,
    Block,
    all_blocks,
    blocks,
    console_commands,
    is_mendbot,
    make_targets,
    mismatches,
    piped_script,
    python_problems,
    transcript,
)
from tests.harness.discord import make_settings, running_world


def _of_kind(kind: str) -> list[Block]:
    return [block for block in all_blocks() if block.kind == kind]


def _ids(block: Block) -> str:
    return block.where


def _mendbot(
    *args: str, cwd: Path, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MENDBOT_CONFIG", "DISCORD_TOKEN"}}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**env, "PYTHONPATH": str(REPO)},
    )


def test_every_code_block_says_what_it_is() -> None:
    """Each fenced block of README.md and docs/*.md has a known kind as its info string."""
    unknown = [
        f"{block.where}: {block.kind or '(none)'}" for block in all_blocks() if block.kind not in KINDS
    ]
    assert unknown == [], f"code blocks of no known kind {KINDS}: {unknown}"


def test_the_block_reader_sees_kinds_and_nested_fences(tmp_path: Path) -> None:
    """Info strings give the kind (first word), a longer fence holds a shorter one, and an
    unclosed fence is an error rather than a block silently skipped."""
    doc = tmp_path / "x.md"
    doc.write_text("```console\nmake run\n```\n\n````text\n```\nnot a block\n```\n````\n```\nbare\n```\n")
    found = [(block.kind, block.body) for block in blocks(doc)]
    assert found == [("console", "make run\n"), ("text", "```\nnot a block\n```\n"), ("", "bare\n")]
    doc.write_text("```yaml\na: 1\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks(doc)


# --- console ----------------------------------------------------------------------------------


def _mendbot_problems(args: list[str]) -> list[str]:
    """A mendbot command line: run when it only prints (`--version`, `--help`), else parsed by the
    real CLI parser (it may need a token, a server or a long time)."""
    if args == ["--version"] or args[-1:] == ["--help"]:
        result = _mendbot(*args, cwd=REPO, timeout=60)
        return (
            []
            if result.returncode == 0 and result.stdout.strip()
            else [f"mendbot {' '.join(args)}: {result}"]
        )
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            command_line().parse_args(args)
    except SystemExit as exc:
        if exc.code:
            return [f"mendbot {' '.join(args)} is refused by the CLI: {err.getvalue().strip()}"]
    return []


def console_problems(body: str) -> list[str]:
    """What is wrong with the commands of a console block: each is checked against the repository
    (tracking `cd`; an absolute directory is the reader's checkout)."""
    problems: list[str] = []
    cwd = REPO
    for words in console_commands(body):
        program, args = words[0], words[1:]
        operands = [arg for arg in args if not arg.startswith("-") and arg != "<placeholder>"]
        if program == "cd":
            cwd = REPO if args[0].startswith("/") else cwd / args[0]
            if not cwd.is_dir():
                problems.append(f"cd {args[0]}: no such directory in the repository")
        elif program == "make":
            missing = [arg for arg in operands if "=" not in arg and arg not in make_targets()]
            problems += [f"make {arg}: no such target in the Makefile" for arg in missing]
        elif is_mendbot(program):
            problems += _mendbot_problems(args)
        elif "/" in program:  # a script of the repository's
            script = cwd / program
            if not (script.is_file() and os.access(script, os.X_OK)):
                problems.append(f"{program}: not an executable file of the repository")
        elif program not in SYSTEM_PROGRAMS:
            problems.append(f"{program}: not a program the docs may name ({sorted(SYSTEM_PROGRAMS)})")
        elif program == "cp" and operands and not operands[0].startswith("/"):
            if not (cwd / operands[0]).exists():
                problems.append(f"cp {operands[0]}: no such file in the repository")
        elif program == "docker" and operands[:1] == ["build"]:
            context = REPO if operands[-1].startswith("/") else cwd / operands[-1]
            if not (context / "Dockerfile").is_file():
                problems.append(f"docker build {operands[-1]}: no Dockerfile there")
        elif program == "docker" and operands[:1] == ["compose"] and not (cwd / "compose.yaml").is_file():
            problems.append(f"docker compose in {cwd.relative_to(REPO)}: no compose.yaml there")
    return problems


@pytest.mark.parametrize("block", _of_kind("console"), ids=_ids)
def test_console_block_runs_or_names_what_exists(block: Block) -> None:
    """A console block's commands are run where they only print, else checked against the
    Makefile, the CLI's parser and the repository's files."""
    assert console_problems(block.body) == [], block.where


def test_make_commands_named_in_prose_exist() -> None:
    """`make X` written inline in README.md or docs/*.md (outside blocks) names a Makefile target."""
    named = {
        (doc.name, word)
        for doc in DOCS
        for span in re.findall(r"`make ([^`]*)`", _prose_of(doc))
        for word in span.split()
        if "=" not in word and not word.startswith("-")
    }
    assert named, "the pattern no longer finds any"
    assert sorted((doc, word) for doc, word in named if word not in make_targets()) == []


def _prose_of(doc: Path) -> str:
    """A document without its fenced blocks (those are checked by kind)."""
    text = doc.read_text()
    for block in blocks(doc):
        text = text.replace(block.body, "", 1)
    return text


def test_console_check_catches_drift() -> None:
    """A missing make target, a refused mendbot option, a missing file and an unknown program fail."""
    body = (
        "make nosuchtarget     # comment\n"
        ".venv/bin/mendbot play --no-such-option\n"
        "cd deploy && cp nosuch.example x\n"
        "sudo -u mendbot frobnicate --now\n"
        "docker build -t mendbot /srv/mendbot   # the checkout: has a Dockerfile\n"
    )
    problems = console_problems(body)
    assert [problem.split(":")[0] for problem in problems] == [
        "make nosuchtarget",
        "mendbot play --no-such-option is refused by the CLI",
        "cp nosuch.example",
        "frobnicate",
    ], problems


def test_console_commands_are_split_as_a_shell_would() -> None:
    """Continuations join, `&&` splits, sudo and env prefixes go, `<placeholders>` stay one word."""
    body = "cd deploy && git clone <your repository> shard-0   # two\nA=1 sudo -u x make \\\n  run\n"
    assert console_commands(body) == [
        ["cd", "deploy"],
        ["git", "clone", "<placeholder>", "shard-0"],
        ["make", "run"],
    ]


# --- playground transcripts -------------------------------------------------------------------


def _sessions() -> Iterator[Any]:
    for doc in DOCS:
        shown = [block for block in blocks(doc) if block.kind == "playground"]
        if shown:
            yield pytest.param(doc, shown, id=doc.name)


def _expected_output(shown: list[Block]) -> tuple[list[str], list[str], bool]:
    """The lines a doc's playground blocks type and show, and whether they show the start-up lines
    (only a block that shows the command it was started with does)."""
    typed: list[str] = []
    lines: list[str] = []
    for block in shown:
        part = transcript(block)
        if part.command is not None:
            script, reader = piped_script(part.command)
            assert script.splitlines() == part.typed, f"{block.where}: the printf script is not what is typed"
            assert is_mendbot(reader[0]) and "play" in reader, f"{block.where}: pipes into {reader}"
            assert _mendbot_problems(reader[1:]) == []
        typed += part.typed
        lines += part.lines
    return typed, lines, transcript(shown[0]).command is not None


@pytest.mark.parametrize(("doc", "shown"), list(_sessions()))
def test_playground_transcripts_are_what_the_playground_prints(
    doc: Path, shown: list[Block], tmp_path: Path
) -> None:
    """A document's playground blocks, typed into one real `mendbot play` session, print what they
    show, line for line (`…` standing for what differs between runs), and the session exits 0."""
    typed, expected, with_start = _expected_output(shown)
    config = tmp_path / "config.yaml"
    config.write_text("health: {enabled: false}\n")
    result = _mendbot(
        "--config", str(config), "play", "--data-dir", str(tmp_path / "playground"),
        cwd=tmp_path, stdin="\n".join(typed) + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    if not with_start:
        first = next(i for i, line in enumerate(printed) if re.match(r"^\S+ in #\S+> ", line))
        printed = printed[first:]
    assert mismatches(expected, printed) == [], f"{doc.name}: {result.stdout}"


def test_transcript_match_allows_only_marked_differences() -> None:
    """`…` matches anything; every other character must be printed as shown."""
    expected = ["[#general] mendbot (m1): 🎲 `2d6` → …", "dashboard: http://127.0.0.1:…/x"]
    assert (
        mismatches(
            expected, ["[#general] mendbot (m1): 🎲 `2d6` → 3 + 5 = **8**", "dashboard: http://127.0.0.1:9/x"]
        )
        == []
    )
    assert (
        mismatches(expected, ["[#general] mendbot (m2): 🎲 `2d6` → 8", "dashboard: http://127.0.0.1:9/x"])
        != []
    )
    assert mismatches(expected, expected[:1]) != []


# --- config, code -----------------------------------------------------------------------------


def yaml_problem(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Loading a config.yaml fragment the way `mendbot` does: None, or the one-line error."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    monkeypatch.setenv("MENDBOT_CONFIG", str(config))  # load_settings sets it: restored after the test
    try:
        load_settings(config, _env_file=None)
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("block", _of_kind("yaml"), ids=_ids)
def test_yaml_block_is_a_config_mendbot_accepts(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config shown in the docs loads in the real Settings: every key exists, every value is valid."""
    assert yaml_problem(block.body, tmp_path, monkeypatch) is None, block.where


def test_a_documented_setting_that_does_not_exist_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The yaml check refuses a key Settings does not have."""
    problem = yaml_problem("dashboard:\n  enabeld: true\n", tmp_path, monkeypatch)
    assert problem is not None and "enabeld" in problem


@pytest.mark.parametrize("block", _of_kind("python"), ids=_ids)
async def test_python_block_imports_and_a_cog_loads(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A python block compiles and imports; one that is a cog (`async def setup`) is loaded into the
    real bot in the virtual Discord and its commands are registered."""
    name = f"docs_block_{block.doc.stem.replace('-', '_')}_{block.line}"
    compile(block.body, block.where, "exec")
    (tmp_path / f"{name}.py").write_text(block.body)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(name)
    if "async def setup(" not in block.body:
        return
    async with running_world(make_settings(tmp_path / "data"), extra_extensions=[name]) as world:
        assert name in world.bot.extensions, f"{block.where} did not load as a cog"
        cogs = [cog for cog in world.bot.cogs.values() if type(cog).__module__ == name]
        commands = [
            command.name for cog in cogs for command in [*cog.get_commands(), *cog.get_app_commands()]
        ]
        guild = discord.Object(world.guild.id)
        registered = {command.name for command in world.bot.tree.get_commands()}
        registered |= {command.name for command in world.bot.tree.get_commands(guild=guild)}
        assert cogs and commands and set(commands) <= registered, (block.where, commands, registered)


@pytest.mark.parametrize("block", _of_kind("python"), ids=_ids)
def test_python_block_passes_the_projects_lint_and_types(block: Block, tmp_path: Path) -> None:
    """A python block passes `ruff check`, `ruff format --check` and `mypy` as the project runs them on
    the file a reader pastes it into: README's `/coin` pasted into cogs/coin.py keeps `make test` green."""
    assert python_problems(block.body, tmp_path) == [], block.where


def test_the_python_check_catches_what_make_test_would(tmp_path: Path) -> None:
    """Imports out of isort's order, a line the formatter would change and a hybrid command mypy cannot
    solve without the ignore cogs/dice.py carries are each reported."""
    body = (
        '"""/coin."""\n\nfrom discord.ext import commands\n\nfrom mendbot.runtime.app import MendBot\n'
        "from mendbot.kernel.errors import UserError\n\n\n"
        "class Coin(commands.Cog):\n"
        '    @commands.hybrid_command(name="coin", description="Flip coins.")\n'
        "    async def coin(self, ctx: commands.Context[MendBot], times: int=1) -> None:\n"
        '        raise UserError("no")\n'
    )
    problems = python_problems(body, tmp_path)
    assert [problem.split(":")[0] for problem in problems] == ["ruff check", "ruff format --check", "mypy"]
    assert "I001" in problems[0] and "arg-type" in problems[2]
