"""YAML documents parsed once per text and kept (bot/kernel/yamldoc.py): read back only unchanged, only
from a private directory, and a start that has seen its documents before does not import PyYAML."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mendbot.kernel import yamldoc

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mendbot" / "yaml"


def _kept(cache: Path, text: str) -> Path:
    return cache / (hashlib.sha256(text.encode()).hexdigest() + ".json")


def test_a_document_is_parsed_and_its_form_kept_under_the_hash_of_its_text(cache: Path) -> None:
    text = "discord:\n  dev_guild_id: 1  # a comment\naccess: {user_ids: [2, 3]}\n"
    assert yamldoc.load(text) == {"discord": {"dev_guild_id": 1}, "access": {"user_ids": [2, 3]}}
    assert _kept(cache, text).is_file()
    assert cache.stat().st_mode & 0o777 == 0o700


def test_the_kept_form_is_what_is_read_the_next_time(cache: Path) -> None:
    text = "a: 1\n"
    yamldoc.load(text)
    _kept(cache, text).write_text('{"a": 2}')  # what a second load reads: the kept form, not the text
    assert yamldoc.load(text) == {"a": 2}


def test_an_edited_document_is_parsed_again(cache: Path) -> None:
    yamldoc.load("a: 1\n")
    _kept(cache, "a: 1\n").write_text('{"a": 2}')
    assert yamldoc.load("a: 1  \n") == {"a": 1}


def test_a_form_in_a_directory_others_may_write_to_is_never_read(cache: Path) -> None:
    text = "a: 1\n"
    yamldoc.load(text)
    _kept(cache, text).write_text('{"a": "planted"}')
    cache.chmod(0o777)
    assert yamldoc.load(text) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("day: 2026-11-26\n", {"day": datetime.date(2026, 11, 26)}),
        ("1: one\n", {1: "one"}),
        ("!!set {a, b}\n", {"a", "b"}),
    ],
)
def test_what_json_would_change_is_parsed_each_time(cache: Path, text: str, parsed: object) -> None:
    assert yamldoc.load(text) == parsed
    assert not _kept(cache, text).exists()
    assert yamldoc.load(text) == parsed


def test_a_corrupt_or_unwritable_cache_only_means_parsing(cache: Path) -> None:
    text = "a: [1, 2]\n"
    yamldoc.load(text)
    _kept(cache, text).write_bytes(b"{not json")
    assert yamldoc.load(text) == {"a": [1, 2]}
    cache.chmod(0o500)
    try:
        assert yamldoc.load("b: 1\n") == {"b": 1}
    finally:
        cache.chmod(0o700)


def test_a_process_without_a_home_parses_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No XDG_CACHE_HOME and no home to put `.cache` in: nothing is written, least of all a `~`
    directory where the process runs."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # as with no HOME and no user entry
    monkeypatch.chdir(tmp_path)
    assert yamldoc.cache_dir() is None
    assert yamldoc.load("a: 1\n") == {"a": 1}
    assert list(tmp_path.iterdir()) == []


def test_at_most_so_many_forms_are_kept_the_oldest_forgotten_first(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every edit of a prompt leaves a form behind: the cache keeps a bounded number."""
    monkeypatch.setattr(yamldoc, "_KEPT_AT_MOST", 3)
    texts = [f"a: {n}\n" for n in range(5)]
    for age, text in enumerate(texts):
        yamldoc.load(text)
        os.utime(_kept(cache, text), ns=(age * 10**9, age * 10**9))  # each older than the next
    assert sorted(path.name for path in cache.glob("*.json")) == sorted(
        _kept(cache, t).name for t in texts[2:]
    )
    assert yamldoc.load(texts[0]) == {"a": 0}  # forgotten: parsed again


def test_invalid_yaml_is_refused_in_pyyamls_words_on_one_line(cache: Path) -> None:
    with pytest.raises(yamldoc.YamlError, match=r"^while parsing a flow sequence.*expected ',' or ']'"):
        yamldoc.load("a: [1, 2\nb: 3\n")
    assert list(cache.glob("*.json")) == []


def test_a_start_that_has_seen_its_config_and_prompts_before_does_not_import_pyyaml(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("discord: {dev_guild_id: 1}\nhealth: {enabled: false}\n")
    script = (
        "import sys\n"
        "from mendbot.kernel.prompts import PromptRegistry\n"
        "from mendbot.kernel.settings import load_settings\n"
        "settings = load_settings(__import__('pathlib').Path(sys.argv[1]))\n"
        "assert settings.discord.dev_guild_id == 1\n"
        "assert not PromptRegistry(__import__('pathlib').Path(sys.argv[2])).load_all()\n"
        "print('yaml' in sys.modules)\n"
    )
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "MENDBOT_CONFIG": str(config)}

    def start() -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, str(config), str(REPO / "prompts")],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()[-1]  # after the log lines of the prompts loaded

    assert start() == "True"  # the first start parses them
    assert start() == "False"
