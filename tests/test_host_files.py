"""What a bot needs and git does not keep, as it reaches the sandbox: every secret value replaced, what is no
secret kept, the token's key given the loopback Discord's token — or the file not copied at all."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from mendbot.kernel.sections import HostConfig
from mendbot.trust.host_files import (
    PLACEHOLDER,
    FileRefused,
    bot_secrets,
    copy_files,
    placeheld,
    secret_values,
    token_keys,
)
from mendbot.trust.redact import Redactor

LIVE_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhJkLm.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_a_dotenv_keeps_what_is_no_secret_and_replaces_what_is() -> None:
    """`PREFIX=!` stays; the token, a password and a quoted, exported key are replaced."""
    text = (
        "# the bot's settings\n"
        f"BOT_TOKEN={LIVE_TOKEN}\n"
        "PREFIX=!\n"
        "export WEATHER_API_KEY='k-9f8e7d6c5b4a'\n"
        'DB_PASSWORD="correct horse battery"\n'
        "GUILD=1234\n"
    )
    written = placeheld(".env", text)
    assert "# the bot's settings\n" in written and "PREFIX=!\n" in written and "GUILD=1234\n" in written
    for secret in (LIVE_TOKEN, "k-9f8e7d6c5b4a", "correct horse battery"):
        assert secret not in written
    assert written.count(PLACEHOLDER) == 3 and "export WEATHER_API_KEY=" in written


def test_the_tokens_key_gets_the_token_it_is_given() -> None:
    """The key `bot.token_env` names holds the loopback Discord's token, wherever it is."""
    assert 'BOT_TOKEN="double.abc"' in placeheld(
        ".env", f"BOT_TOKEN={LIVE_TOKEN}\n", token_keys=["BOT_TOKEN"], token="double.abc"
    )
    nested = placeheld(
        "config.json",
        json.dumps({"discord": {"token": LIVE_TOKEN}}),
        token_keys=["token"],
        token="double.abc",
    )
    assert json.loads(nested) == {"discord": {"token": "double.abc"}}


def test_a_copy_made_ready_before_is_made_ready_again_with_another_token() -> None:
    """A tree prepared twice (the proof's tests, then its replay): placeholders stay, the token changes."""
    text = f"BOT_TOKEN={LIVE_TOKEN}\nDB_PASSWORD=pa55-word\nDB_URL=mysql://bot:pa55-word@db/bot\n"
    once = placeheld(".env", text, token_keys=["BOT_TOKEN"], token="double.one")
    twice = placeheld(".env", once, token_keys=["BOT_TOKEN"], token="double.two")
    assert twice == once.replace("double.one", "double.two")
    assert f'DB_PASSWORD="{PLACEHOLDER}"' in twice and f"bot:{PLACEHOLDER}@db" in twice


def test_json_and_yaml_are_replaced_at_any_depth() -> None:
    """Nested keys, lists of them, a credential shape under an innocent key, a URL's password."""
    value = {
        "prefix": "?",
        "services": [{"name": "forecast", "api_key": "fk-123456", "url": "https://u:hunter22@x.invalid/v1"}],
        "owner_note": LIVE_TOKEN,
        "port": 8080,
    }
    for name, dump, load in (
        ("config.json", json.dumps, json.loads),
        ("settings.yaml", yaml.safe_dump, yaml.safe_load),
    ):
        written = load(placeheld(name, dump(value)))
        assert written["prefix"] == "?" and written["port"] == 8080
        service = written["services"][0]
        assert service["name"] == "forecast" and service["api_key"] == PLACEHOLDER
        assert service["url"] == f"https://u:{PLACEHOLDER}@x.invalid/v1"
        assert written["owner_note"] == PLACEHOLDER


def test_toml_keeps_its_comments_and_layout() -> None:
    """A TOML file is changed in its own text: comments and the rest stay as they were."""
    text = (
        '# how the bot runs\nuse_database = false\n\n[db]\nhost = "mariadb"  # the server\n'
        'password = "s3cr3t-pw"\n'
    )
    written = placeheld("config/bot.toml", text)
    assert written == text.replace('"s3cr3t-pw"', f'"{PLACEHOLDER}"')
    assert tomllib.loads(written)["db"] == {"host": "mariadb", "password": PLACEHOLDER}


def test_a_python_settings_file_has_its_secret_literals_replaced() -> None:
    """Assignments, dict entries and keyword arguments named like secrets lose their literal values."""
    text = (
        "PREFIX = '!'\n"
        f"TOKEN = '{LIVE_TOKEN}'\n"
        "DATABASE = {'user': 'bot', 'password': 'pa55-word'}\n"
        "CLIENT = dict(secret='shh-shh-shh', region='eu')\n"
    )
    written = placeheld("config.py", text)
    assert "PREFIX = '!'" in written and "'user': 'bot'" in written and "region='eu'" in written
    for secret in (LIVE_TOKEN, "pa55-word", "shh-shh-shh"):
        assert secret not in written
    compile(written, "config.py", "exec")


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("token.txt", LIVE_TOKEN, "cannot tell its secrets"),
        ("config.json", '{"token": "abc", ', "cannot be read as json"),
        ("settings.py", "TOKEN = (", "cannot be read as python"),
        # the secret also sits where no key names it (a comment): it would reach the sandbox
        ("config.toml", f'token = "{LIVE_TOKEN}"\n# old: {LIVE_TOKEN}\n', "also appears"),
    ],
)
def test_a_file_whose_secrets_cannot_all_be_replaced_is_refused(name: str, text: str, why: str) -> None:
    """Refused, saying which file and why, rather than copied with a secret left in it."""
    with pytest.raises(FileRefused, match=why) as refused:
        placeheld(name, text)
    assert str(refused.value).startswith(name) and LIVE_TOKEN not in str(refused.value)


def test_secret_values_and_token_keys_are_read_from_the_file() -> None:
    """What the redactor learns (the values) and what adopt names as the token (a key with TOKEN in it)."""
    text = f"DISCORD_BOT_TOKEN={LIVE_TOKEN}\nPREFIX=!\nDB_PASSWORD=pa55-word\n"
    assert sorted(secret_values(".env", text)) == sorted([LIVE_TOKEN, "pa55-word"])
    assert token_keys(".env", text) == ["DISCORD_BOT_TOKEN"]
    assert token_keys("config.json", json.dumps({"bot": {"token": "x"}, "prefix": "!"})) == ["token"]


def test_copies_keep_the_trees_own_files_and_never_leave_it(tmp_path: Path) -> None:
    """A file the tree has is the tree's own (written again, its secrets replaced and the token given); a
    link or a path leaving the tree is refused; a file the live checkout lacks is no problem."""
    live, tree = tmp_path / "live", tmp_path / "tree"
    (live / "config").mkdir(parents=True)
    tree.mkdir()
    (live / ".env").write_text(f"TOKEN={LIVE_TOKEN}\nPREFIX=!\n")
    (live / "config" / ".env").write_text(f"TOKEN={LIVE_TOKEN}\n")
    (live / "settings.json").write_text('{"token": "live-json-token", "from": "live"}')
    (tree / "settings.json").write_text('{"token": "committed-token", "from": "tree"}')
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "config").symlink_to(outside)

    problems = copy_files(
        live,
        tree,
        [".env", "config/.env", "settings.json", "../live/.env", "absent.toml"],
        token_keys=["token"],
        token="double.abc",
    )

    assert (tree / ".env").read_text() == 'TOKEN="double.abc"\nPREFIX=!\n'
    assert json.loads((tree / "settings.json").read_text()) == {"token": "double.abc", "from": "tree"}
    assert not list(outside.iterdir())
    assert problems == [
        "config/.env: not a path inside the repository (or reached through a link)",
        "../live/.env: not a path inside the repository (or reached through a link)",
    ]


def test_the_bots_own_secrets_are_known_to_the_redactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What its files hold under secret keys and its token's variable: replaced on every way out of the
    live process (a log line, a recorded error)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / ".env").write_text("BOT_TOKEN=from-the-file-1234\nPREFIX=!\n")
    (tmp_path / "config.json").write_text('{"db": {"url": "postgres://bot:pa55-word-99@db/bot"}}')
    monkeypatch.setenv("ALMANAC_TOKEN", "from-the-environment-5678")
    host = HostConfig(
        entry=["python", "main.py"], token_env="ALMANAC_TOKEN", files=["config/.env", "config.json"]
    )
    redactor = Redactor(bot_secrets(host, tmp_path))
    line = redactor.text(
        "login with from-the-file-1234 / from-the-environment-5678, db pa55-word-99, prefix !"
    )
    assert line == "login with [redacted] / [redacted], db [redacted], prefix !"
    assert bot_secrets(None, tmp_path) == []
