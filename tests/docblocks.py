"""The fenced code blocks of README.md and docs/*.md: which kind each is, and how each kind is checked.

Every block says what it is in its info string, so a test can run or check it and what the docs show
cannot drift from what mendbot does (tests/test_docs_run.py). The kinds, and what happens to each:

- `console`: shell commands, one per line (`# …` is a comment, `\\` continues a line). Commands that
  are safe and quick run (`mendbot --version`, `mendbot <cmd> --help`); the rest are checked: a
  `make` target exists, a `mendbot` command line is accepted by the real CLI parser, a file the
  command reads (`cp` source, a repo script, `docker build`'s Dockerfile) is in the repository, the
  program is one the docs may name. README's quickstart runs as a whole on a fresh clone
  (tests/test_cli.py).
- `playground`: a playground session as it prints: a `name in #channel> line` prompt is typed, the
  other lines are the bot's output; an optional first line `$ printf '…' | .venv/bin/mendbot play`
  is the command that types them. Run through the real `mendbot play`, one session per document;
  `…` in an output line stands for text that differs between runs (ids, tokens, ports, dice).
- `yaml`: a config.yaml fragment, loaded by the real `Settings` (an unknown key fails).
- `python`: compiled and imported; a cog (it defines `async def setup`) is loaded into the bot; and it
  passes the project's own lint and type checks as the file a reader pastes it into would
  (`ruff check`, `ruff format --check` and `mypy` with pyproject.toml, as `cogs/<name>.py`), so
  `make test` stays green after following the docs.
- `mermaid`: the layer diagram, compared with `python -m mendbot.tools.architecture`
  (tests/test_architecture.py).
- `text`: output, file trees and other files shown as they are; not run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
KINDS = ("console", "playground", "yaml", "python", "mermaid", "text")

# A prompt the playground prints before each line it runs: `alice in #general> /roll 2d6`.
PROMPT = re.compile(r"^(?P<user>[\w.-]+) in #(?P<channel>[\w-]+)> (?P<line>.*)$")
PLACEHOLDER = "…"
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the opening fence), its kind, its text."""

    doc: Path
    line: int
    kind: str
    body: str

    @property
    def where(self) -> str:
        name = self.doc.relative_to(REPO) if self.doc.is_relative_to(REPO) else self.doc.name
        return f"{name}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a markdown file, in order; the kind is the info string's first word."""
    found: list[Block] = []
    fence: str | None = None
    start, kind = 0, ""
    body: list[str] = []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence, start, body = opened.group(1), number, []
            kind = (opened.group(2).split() or [""])[0]
        elif fence is not None and line.startswith(fence) and not line[len(fence) :].strip():
            found.append(Block(doc, start, kind, "\n".join(body) + "\n"))
            fence = None
        elif fence is not None:
            body.append(line)
    if fence is not None:
        raise ValueError(f"{doc.name}:{start}: a code block is never closed")
    return found


def all_blocks() -> Iterator[Block]:
    for doc in DOCS:
        yield from blocks(doc)


# --- playground transcripts -------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    """A `playground` block taken apart: the command shown (if any), the lines typed, and the
    output expected, as a list of lines where a prompt line is kept as printed."""

    command: str | None
    typed: list[str]
    lines: list[str]


def transcript(block: Block) -> Transcript:
    rows = [row for row in block.body.splitlines() if row.strip()]
    command = rows.pop(0)[2:] if rows and rows[0].startswith("$ ") else None
    typed = [match.group("line") for row in rows if (match := PROMPT.match(row))]
    return Transcript(command, typed, rows)


def piped_script(command: str) -> tuple[str, list[str]]:
    """`printf '<script>' | <cmd…>`: the script it types, and the command it pipes it into."""
    writer, bar, reader = command.partition(" | ")
    words = shlex.split(writer)
    if not bar or len(words) != 2 or words[0] != "printf":
        raise ValueError(f"expected `printf '…' | mendbot play`, got {command!r}")
    return words[1].encode().decode("unicode_escape"), shlex.split(reader)


def line_pattern(expected: str) -> re.Pattern[str]:
    """An output line as a pattern: literal, except that `…` matches any text."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split(PLACEHOLDER)))


def mismatches(expected: list[str], shown: list[str]) -> list[str]:
    """How the printed lines differ from the expected ones (empty when they match)."""
    problems = [
        f"expected {want!r}, printed {got!r}"
        for want, got in zip(expected, shown, strict=False)
        if not line_pattern(want).fullmatch(got)
    ]
    if len(expected) != len(shown):
        problems.append(f"expected {len(expected)} lines, printed {len(shown)}: {shown[len(expected) :]}")
    return problems


# --- console commands -------------------------------------------------------------------------

# Programs a console block may name besides `make`, `mendbot` and the repository's own scripts:
# the system tools that setting mendbot up by hand needs. They are not run (they install things,
# need root or a server); what of ours they name is checked.
SYSTEM_PROGRAMS = frozenset(
    {"cd", "cp", "git", "mkdir", "chown", "install", "useradd", "systemctl", "journalctl", "docker", "pip"}
)
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ANGLE_PLACEHOLDER = re.compile(r"<[^<>\n]+>")


def console_commands(body: str) -> list[list[str]]:
    """The simple commands of a console block as argument lists: comments dropped, continued lines
    joined, `&&`/`;`/`|` split apart, `sudo [-u user]` and leading `VAR=value` removed.
    A `<placeholder>` the reader fills in becomes the single word `<placeholder>`."""
    text = re.sub(r"\\\n", " ", body)
    commands: list[list[str]] = []
    for raw in text.splitlines():
        lexer = shlex.shlex(_ANGLE_PLACEHOLDER.sub("PLACEHOLDER", raw), posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for word in lexer:
            if word in {"&&", ";", "|", "||"}:
                commands.append(current)
                current = []
            else:
                current.append("<placeholder>" if word == "PLACEHOLDER" else word)
        commands.append(current)
    return [_without_prefixes(command) for command in commands if command]


def _without_prefixes(words: list[str]) -> list[str]:
    while words and (words[0] == "sudo" or _ENV_ASSIGNMENT.match(words[0])):
        words = words[1:]
        if words[:1] == ["-u"]:
            words = words[2:]
    return words


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


def is_mendbot(program: str) -> bool:
    return program in {"mendbot", ".venv/bin/mendbot"}


# --- python -----------------------------------------------------------------------------------


def _tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", name, *args],
        cwd=REPO,  # the project's config, and mypy's cache of the checkout (warm after one `make test`)
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def python_problems(body: str, scratch: Path, name: str = "docs_block") -> list[str]:
    """What the project's own checks say of a python block pasted into `cogs/<name>.py` of a checkout:
    ruff's lint and format (read as that path, nothing written there) and mypy with pyproject.toml's
    settings (on a copy in `scratch`, with the checkout's packages importable as they are there)."""
    as_pasted = str(REPO / "cogs" / f"{name}.py")
    problems: list[str] = []
    linted = _tool("ruff", "check", "--no-fix", "--output-format=concise", "--stdin-filename", as_pasted, "-",
                   stdin=body)  # fmt: skip
    if linted.returncode != 0:
        problems.append(f"ruff check: {linted.stdout.strip()}")
    formatted = _tool("ruff", "format", "--check", "--stdin-filename", as_pasted, "-", stdin=body)
    if formatted.returncode != 0:
        problems.append(f"ruff format --check: {(formatted.stdout + formatted.stderr).strip()}")
    copy = scratch / f"{name}.py"
    copy.write_text(body)
    typed = _tool("mypy", "--config-file", str(REPO / "pyproject.toml"), str(copy))
    if typed.returncode != 0:
        problems.append(f"mypy: {typed.stdout.strip()}")
    return problems
