"""Prompt registry: validation, hot reload within a second, invalid edits keep the old version."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from mendbot.kernel.prompts import PromptError, PromptRegistry, parse_prompt
from mendbot.runtime.services import installed_prompts
from tests.harness.discord import bot_messages, make_settings, running_world

PERSONA = "---\nkind: persona\nmodel: m1\nmax_tokens: 100\n---\nYou are {name}.\n"


def _registry(tmp_path: Path, errors: list[str]) -> PromptRegistry:
    (tmp_path / "chat").mkdir()
    (tmp_path / "chat" / "persona.md").write_text(PERSONA)
    registry = PromptRegistry(tmp_path, on_error=errors.append)
    assert registry.load_all() == []
    return registry


async def _eventually(check: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met within the time allowed")
        await asyncio.sleep(0.02)


def test_front_matter_is_validated(tmp_path: Path) -> None:
    """Front matter fields are typed: a bad temperature is refused with the field named."""
    errors: list[str] = []
    registry = _registry(tmp_path, errors)
    (tmp_path / "chat" / "bad.md").write_text("---\nkind: persona\ntemperature: 7\n---\nx\n")
    assert registry.load_all() == [errors[0]]
    assert "chat/bad: temperature" in errors[0]
    with pytest.raises(PromptError):
        registry.get("chat/bad")
    assert registry.get("chat/persona").render(name="mendbot") == "You are mendbot.\n"


@pytest.mark.parametrize(
    ("front_matter", "error"),
    [
        ("description: d", "kind: required, and missing"),
        ("kind: poem", "kind: should be one of persona, agent, skill, not 'poem'"),
        (
            "kind: persona\ntone: dry",
            "tone: not a front matter field (the fields are kind, description, model,",
        ),
        ("kind: persona\nmax_tokens: lots", "max_tokens: Expected `int`, got `str`"),
        ("kind: persona\nmax_tokens: 0", "max_tokens: Expected `int` >= 1"),
        ("kind: persona\nmax_tokens: 100000", "max_tokens: Expected `int` <= 64000"),
        ("kind: persona\ntemperature: 7", "temperature: Expected `float` <= 1.0"),
        ("kind: persona\nmodel: [a, b]", "model: Expected `str | null`, got `array`"),
        ("kind: persona\ndescription:", "description: Expected `str`, got `null`"),
        ("- kind: persona", "front matter: Expected `object`, got `array`"),
        ("1: one\nkind: persona", "front matter: every field name must be text"),
        ("kind: [persona", "front matter is not valid YAML"),
    ],
)
def test_a_bad_front_matter_is_refused_naming_the_field(
    tmp_path: Path, front_matter: str, error: str
) -> None:
    """Each kind of bad front matter is refused in one line: the prompt's key, the field, what is wrong."""
    (tmp_path / "bad.md").write_text(f"---\n{front_matter}\n---\nx\n")
    with pytest.raises(PromptError) as refused:
        parse_prompt(tmp_path / "bad.md", tmp_path)
    assert str(refused.value).startswith(f"bad: {error}")


def test_a_quoted_number_is_taken_for_one(tmp_path: Path) -> None:
    """YAML's quoted numbers are accepted where a number is expected, as they always were."""
    (tmp_path / "p.md").write_text("---\nkind: agent\nmax_tokens: '200'\ntemperature: '0.5'\n---\nx\n")
    meta = parse_prompt(tmp_path / "p.md", tmp_path).meta
    assert (meta.kind, meta.max_tokens, meta.temperature, meta.model) == ("agent", 200, 0.5, None)


async def test_changed_prompt_is_reloaded_within_a_second(tmp_path: Path) -> None:
    """Editing a prompt file on disk changes what the registry serves, within a second."""
    errors: list[str] = []
    registry = _registry(tmp_path, errors)
    stop = asyncio.Event()
    watcher = asyncio.create_task(registry.watch(stop))
    try:
        await asyncio.sleep(0)  # one turn of the loop: the watcher's first step watches the prompts
        (tmp_path / "chat" / "persona.md").write_text(PERSONA.replace("m1", "m2"))
        await _eventually(lambda: registry.get("chat/persona").meta.model == "m2")
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
    assert errors == []


async def test_invalid_edit_keeps_previous_version_and_reports(tmp_path: Path) -> None:
    """A broken edit keeps the last good prompt serving and reports the error."""
    errors: list[str] = []
    registry = _registry(tmp_path, errors)
    stop = asyncio.Event()
    watcher = asyncio.create_task(registry.watch(stop))
    try:
        await asyncio.sleep(0)  # as above
        (tmp_path / "chat" / "persona.md").write_text("---\nkind: persona\nmax_tokens: lots\n---\nbroken\n")
        await _eventually(lambda: bool(errors))
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
    assert registry.get("chat/persona").meta.model == "m1"
    assert "max_tokens" in errors[0]
    assert "previous version kept" in errors[0]


async def test_invalid_prompt_is_reported_in_the_dev_channel(tmp_path: Path) -> None:
    """When an edited prompt fails validation the bot says so in #dev, and chat keeps the old one."""
    prompts_dir = tmp_path / "prompts"
    shutil.copytree(installed_prompts(), prompts_dir)
    async with running_world(make_settings(tmp_path / "data"), prompts_dir=prompts_dir) as world:
        prompts = world.bot.services.prompts
        before = prompts.get("chat/persona")
        persona = prompts_dir / "chat" / "persona.md"
        persona.write_text("---\nkind: persona\nmax_tokens: -1\n---\nbroken\n")
        assert prompts.reload_path(persona) is not None  # what the watcher does for a changed file
        await world.quiesce()
        reports = [m.content for m in bot_messages(world, world.dev)]
    assert any(r.startswith("⚠️ Prompt not reloaded: chat/persona: max_tokens") for r in reports)
    assert prompts.get("chat/persona") is before


def test_every_shipped_prompt_is_valid_from_a_relative_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """All prompts in prompts/ load, also when the registry is given a relative path."""
    monkeypatch.chdir(installed_prompts().parent)
    registry = PromptRegistry(Path("prompts"))
    assert registry.load_all() == []
    assert {
        "chat/persona",
        "agent/system",
        "agent/investigate",
        "agent/plan",
        "agent/edit",
        "agent/retry",
    } <= set(registry.keys())
