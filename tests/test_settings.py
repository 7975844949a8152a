"""Settings as a new user writes them: `.env` copied from the example, config.yaml with typos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mendbot.improve.proof.replay import HostBot, _prepare
from mendbot.improve.proof.replay_plan import ReplayPlan
from mendbot.kernel.sections import HOST_CHECKS, HOST_PROTECTED_PATHS, HostConfig
from mendbot.kernel.settings import ConfigError, load_settings, refuse_shard_subset
from mendbot.trust.loopback_discord import DiscordDouble

REPO = Path(__file__).resolve().parent.parent


def _yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "my-config.yaml"
    path.write_text(text)
    monkeypatch.setenv("MENDBOT_CONFIG", str(path))  # restored after the test
    return path


def _env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_env_example_copied_as_is_means_no_secrets(tmp_path: Path) -> None:
    """`.env.example` copied unchanged (empty values) leaves every secret unset, not set to ''."""
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    settings = load_settings(_env_file=_env_file(tmp_path, example))
    assert settings.discord_token is None
    assert settings.anthropic_api_key is None
    assert settings.anthropic_base_url is None
    assert settings.github_token is None


def test_empty_environment_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`DISCORD_TOKEN=` in the environment counts as not set."""
    monkeypatch.setenv("DISCORD_TOKEN", "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "   ")
    settings = load_settings(_env_file=None)
    assert settings.discord_token is None
    assert settings.anthropic_api_key is None


def test_empty_secret_passed_directly_means_unset() -> None:
    """An empty secret given as an argument is unset too (one rule for every source)."""
    assert load_settings(_env_file=None, github_token="").github_token is None


def test_unknown_env_file_variables_are_ignored(tmp_path: Path) -> None:
    """Other tools' variables (and typos) in `.env` do not stop start-up; known ones are read."""
    env = _env_file(tmp_path, "SOME_OTHER_TOOL=1\nDISCROD_TOKEN=x\nANTHROPIC_API_KEY=sk-test\n")
    settings = load_settings(_env_file=env)
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-test"


def test_other_programs_variables_named_like_settings_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the secrets and LOG_LEVEL come from the environment or `.env`: a `DATABASE`, `LOGGING` or
    `DATA_DIR` set for another program neither stops the start nor moves mendbot's data."""
    _yaml(tmp_path, monkeypatch, f"data_dir: {tmp_path / 'mine'}\n")
    others = {"DATABASE": "postgres", "LOGGING": "verbose", "STORAGE": "/mnt/x", "DATA_DIR": "/elsewhere"}
    for name, value in {**others, "repo_dir": "/other"}.items():
        monkeypatch.setenv(name, value)
    env = _env_file(tmp_path, "HEALTH=off\nDATA_DIR=/elsewhere\nGITHUB_TOKEN=ghp_test\n")
    settings = load_settings(_env_file=env)
    assert settings.data_dir == tmp_path / "mine"
    assert settings.repo_dir == Path(".")
    assert settings.database.url is None and settings.health.enabled
    assert settings.github_token is not None and settings.github_token.get_secret_value() == "ghp_test"


def test_an_env_file_that_is_not_text_is_named_in_the_error(tmp_path: Path) -> None:
    """A `.env` that cannot be read as UTF-8 is reported as `.env`, not as config.yaml."""
    env = tmp_path / ".env"
    env.write_bytes(b"DISCORD_TOKEN=\xff\xfe\n")
    with pytest.raises(ConfigError, match=rf"cannot read {env}: 'utf-8' codec can't decode"):
        load_settings(_env_file=env)


def test_log_level_from_env_file_overrides_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL in `.env` is read (any case) and wins over logging.level in config.yaml."""
    _yaml(tmp_path, monkeypatch, "logging: {level: warning}\n")
    assert load_settings(_env_file=None).level == "WARNING"
    assert load_settings(_env_file=_env_file(tmp_path, "LOG_LEVEL=debug\n")).level == "DEBUG"


def test_bad_log_level_names_the_env_file(tmp_path: Path) -> None:
    """An invalid LOG_LEVEL from `.env` is refused with the file it came from."""
    env = _env_file(tmp_path, "LOG_LEVEL=loud\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=env)
    assert "LOG_LEVEL" in str(caught.value)
    assert str(env) in str(caught.value)
    assert "DEBUG, INFO, WARNING" in str(caught.value)


def test_bad_log_level_names_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid LOG_LEVEL from the process environment says it came from the environment."""
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="LOG_LEVEL in the environment"):
        load_settings(_env_file=None)


def test_config_error_names_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value in the config file names that file (the --config path), not a generic config.yaml."""
    path = _yaml(tmp_path, monkeypatch, "chat: {history_limit: 5000}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "chat.history_limit" in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("discord: {dev_guild_id: 0}\n", "discord.dev_guild_id"),
        ("discord: {dev_channel_ids: [-5]}\n", "discord.dev_channel_ids.0"),
        ("discord: {chat_channel_ids: [1, 0]}\n", "discord.chat_channel_ids.1"),
        ("access: {allowed_user_ids: [-1]}\n", "access.allowed_user_ids.0"),
        ("access: {allowed_role_ids: [18446744073709551616]}\n", "access.allowed_role_ids.0"),
    ],
)
def test_discord_ids_must_be_positive_snowflakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str
) -> None:
    """Zero, negative and over-64-bit Discord ids are refused, naming the key."""
    _yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert f"{key}: must be a Discord id" in str(caught.value)


def test_real_snowflakes_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids as Discord's Copy ID gives them load unchanged."""
    _yaml(tmp_path, monkeypatch, "discord: {dev_guild_id: 1187654321098765432, dev_channel_ids: [42]}\n")
    settings = load_settings(_env_file=None)
    assert settings.discord.dev_guild_id == 1187654321098765432
    assert settings.discord.dev_channel_ids == [42]


def test_unknown_top_level_key_suggests_the_close_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt top-level key is refused with "did you mean" and the file's name."""
    path = _yaml(tmp_path, monkeypatch, "discrod: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value) == (
        f"config error: {path}: unknown key `discrod` — did you mean `discord`? (see config.example.yaml)"
    )


def test_unknown_nested_key_suggests_the_close_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt key inside a section gets a suggestion from that section's keys."""
    _yaml(tmp_path, monkeypatch, "improve:\n  max_turn: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key `improve\.max_turn` — did you mean `max_turns`"):
        load_settings(_env_file=None)


def test_unknown_key_with_nothing_close_lists_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no close match the message lists the keys that exist there."""
    _yaml(tmp_path, monkeypatch, "health:\n  zzz: 1\n")
    with pytest.raises(ConfigError, match="known keys here: enabled, host, port"):
        load_settings(_env_file=None)


def test_secret_in_config_file_is_sent_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token written into the config file is refused with where it belongs instead."""
    _yaml(tmp_path, monkeypatch, "discord_token: abc\n")
    with pytest.raises(ConfigError, match=r"set DISCORD_TOKEN in the environment or in \.env"):
        load_settings(_env_file=None)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just words\n", "a single value")])
def test_top_level_list_or_scalar_is_a_plain_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, kind: str
) -> None:
    """A config file that is not a mapping says so in words, naming the file."""
    path = _yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith(f"config error: {path} holds {kind}, not keys and values")
    assert "dict" not in message and "model_" not in message


def test_malformed_yaml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """YAML that does not parse is one line naming the file."""
    path = _yaml(tmp_path, monkeypatch, "discord: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith(f"config error: cannot read {path}:")
    assert "\n" not in str(caught.value)


def test_a_directory_named_as_the_config_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MENDBOT_CONFIG naming a directory (its parent, say) is a reply naming it, not the defaults."""
    monkeypatch.setenv("MENDBOT_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=rf"cannot read {tmp_path}: .*Is a directory"):
        load_settings(_env_file=None)


def test_empty_config_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file with only comments is the defaults."""
    _yaml(tmp_path, monkeypatch, "# nothing yet\n")
    assert load_settings(_env_file=None).discord.command_prefix == "!"


def test_config_example_loads_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.yaml, copied as is, is valid and equals the built-in defaults."""
    example = Path(__file__).resolve().parent.parent / "config.example.yaml"
    monkeypatch.setenv("MENDBOT_CONFIG", str(example))
    from_example = load_settings(_env_file=None)
    monkeypatch.setenv("MENDBOT_CONFIG", os.devnull)  # an empty config: the defaults
    assert from_example == load_settings(_env_file=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("discord: {shard_count: 0}\n", "discord.shard_count: must be at least 1"),
        ("discord: {shard_ids: [0]}\n", "discord.shard_ids: needs discord.shard_count as well"),
        ("discord: {shard_count: 2, shard_ids: [1, 1]}\n", "discord.shard_ids: lists shard 1 more than once"),
        (
            "discord: {shard_count: 2, shard_ids: [2]}\n",
            "shard 2 does not exist: with shard_count 2 the ids are 0 to 1",
        ),
        ("discord: {shard_count: 2, shard_ids: [-1]}\n", "shard -1 does not exist"),
        ("discord: {shard_count: 2, shard_ids: []}\n", "discord.shard_ids: names no shard"),
    ],
)
def test_shard_settings_that_cannot_work_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    """A shard count below 1, ids without a count, repeated ids and ids outside the count are refused."""
    _yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert expected in str(caught.value)


def test_every_shard_of_the_count_is_not_a_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shard_ids naming every id of shard_count (any order) is the whole bot; fewer is a subset."""
    _yaml(tmp_path, monkeypatch, "discord: {shard_count: 3, shard_ids: [2, 0, 1]}\n")
    assert not load_settings(_env_file=None).discord.runs_shard_subset
    _yaml(tmp_path, monkeypatch, "discord: {shard_count: 3, shard_ids: [2, 0]}\n")
    assert load_settings(_env_file=None).discord.runs_shard_subset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("database: {url: 'mysql://db/mendbot'}\n", "database.url: must be a PostgreSQL URL"),
        (
            "database: {url: 'postgresql://bot:hunter2@db/mendbot'}\n",
            "database.url: must not carry a password",
        ),
        (
            "database: {url: 'postgresql://bot@db/mendbot?sslmode=require&password=hunter2'}\n",
            "database.url: must not carry a password",
        ),
    ],
)
def test_database_urls_that_cannot_work_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    """Only PostgreSQL is another engine, and its password stays out of config.yaml (PGPASSWORD)."""
    _yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert expected in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_database_is_sqlite_unless_a_url_names_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No url: the SQLite file in data_dir; a url (blank is none): that server, shared by processes."""
    _yaml(tmp_path, monkeypatch, "data_dir: here\ndatabase: {url: ''}\n")
    assert load_settings(_env_file=None).database_target == Path("here") / "mendbot.db"
    _yaml(tmp_path, monkeypatch, "database: {url: 'postgresql://bot@db:5432/mendbot'}\n")
    assert load_settings(_env_file=None).database_target == "postgresql://bot@db:5432/mendbot"


def test_a_shard_subset_needs_the_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Part of the shards in this process: refused on SQLite (each process would have its own
    database), accepted with database.url (the processes share PostgreSQL and elect a leader)."""
    _yaml(tmp_path, monkeypatch, "discord: {shard_count: 2, shard_ids: [1]}\n")
    with pytest.raises(ConfigError) as caught:
        refuse_shard_subset(load_settings(_env_file=None))
    assert "set database.url" in str(caught.value)
    _yaml(
        tmp_path,
        monkeypatch,
        "discord: {shard_count: 2, shard_ids: [1]}\ndatabase: {url: 'postgresql://bot@db/mendbot'}\n",
    )
    refuse_shard_subset(load_settings(_env_file=None))


def test_loading_the_settings_does_not_import_pydantic(tmp_path: Path) -> None:
    """A fresh `load_settings()` of every section (config.example.yaml) leaves pydantic unimported: its
    first model alone is ~0.13 s of CPU on every start (issue 42's budget to READY)."""
    shutil.copyfile(REPO / "config.example.yaml", tmp_path / "config.yaml")
    code = (
        "import sys\n"
        "from mendbot.kernel.settings import load_settings\n"
        "settings = load_settings()\n"
        "assert settings.chat.history_limit == 20\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'pydantic'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_problem_is_counted_and_said_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bad values: the first is named with what a good one is and what was given, the rest counted."""
    path = _yaml(tmp_path, monkeypatch, "improve: {max_attempts: 0, max_turns: 0}\nhealth: {port: -1}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value) == (
        "config error: improve.max_attempts: must be between 1 and 10 (got 0) — fix it in "
        f"{path} (see config.example.yaml for every key and its default); 2 more problem(s) after this one"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("improve: {max_turns: 0}\n", "improve.max_turns: must be at least 1 (got 0)"),
        (
            "improve: {max_turns: many}\n",
            "improve.max_turns: must be a whole number, at least 1 (got 'many')",
        ),
        ("observe: {error_rate: {threshold: 0}}\n", "threshold: must be more than 0 and at most 1 (got 0)"),
        ("audit: {slo: 1}\n", "audit.slo: must be more than 0 and less than 1 (got 1)"),
        ("improve: {autonomy: always}\n", "improve.autonomy: must be one of off, investigate, propose"),
        ("health: {enabled: maybe}\n", "health.enabled: must be true or false (got 'maybe')"),
        ("discord: {extensions: cogs.fun}\n", "discord.extensions: must be a list"),
        ("discord: 5\n", "discord: must be keys and values (leave it out for the defaults) (got 5)"),
        ("playground: {users: [{name: Alice}]}\n", "playground.users.0.name: must be 1 to 32 characters"),
        ("bot: {entry: []}\n", 'bot.entry: must name the program, e.g. ["python", "bot.py"]'),
        ("bot: {bot_class: 'bot:Bot'}\n", "bot.entry: is missing"),
        ("bot: {entry: [python, bot.py], env: {PREFIX: 1}}\n", "bot.env.PREFIX: must be text (got 1)"),
        ("audit: {timezone: Europe}\n", "audit.timezone: not a time zone name"),
        (
            "dashboard: {public_url: 'ftp://example.org'}\n",
            "dashboard.public_url: must be an http(s) address",
        ),
        ("drill: {every_h: 0}\n", "drill.every_h: must be more than 0 (got 0)"),
    ],
)
def test_a_bad_value_says_what_a_good_one_looks_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    """Each kind of bad value (a bound, a type, a choice, a shape, a check of ours) is one line in words."""
    _yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value) and "Expected `" not in str(caught.value)


def test_a_misspelt_key_in_a_list_item_suggests_the_close_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in a playground user's key is named first, with "did you mean", not as the key it left out."""
    _yaml(tmp_path, monkeypatch, "playground: {users: [{nmae: bob}]}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "unknown key `playground.users.0.nmae` — did you mean `name`?" in str(caught.value)
    assert str(caught.value).endswith("; 1 more problem(s) after this one")


@pytest.mark.parametrize(("given", "kept"), [("true", "test"), ("false", "off"), ("replay", "replay")])
def test_require_proof_reads_a_boolean_as_a_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, kept: str
) -> None:
    """`deploy.require_proof: true` means "test" and `false` means "off"; a level is kept as written."""
    _yaml(tmp_path, monkeypatch, f"deploy: {{require_proof: {given}}}\n")
    assert load_settings(_env_file=None).deploy.require_proof == kept


def test_a_public_url_is_kept_without_its_trailing_slash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dashboard.public_url loses a trailing slash (links are built on it), and https makes cookies Secure."""
    _yaml(tmp_path, monkeypatch, "dashboard: {public_url: 'https://mendbot.example.org/'}\n")
    dashboard = load_settings(_env_file=None).dashboard
    assert dashboard.public_url == "https://mendbot.example.org" and dashboard.secure_cookie


def test_secrets_are_hidden_when_the_settings_are_printed() -> None:
    """A token or key never appears in the settings' repr or str; `get_secret_value()` gives it."""
    settings = load_settings(_env_file=None, discord_token="tok-123", anthropic_api_key="sk-456")
    assert "tok-123" not in repr(settings) and "sk-456" not in str(settings)
    assert settings.discord_token is not None and settings.discord_token.get_secret_value() == "tok-123"


def test_an_attached_bots_checks_and_protected_paths_are_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a `bot:` section, improve.checks is the bot's `checks` (else none of mendbot's) and the
    protected paths are a host's, unless improve sets them in the file."""
    _yaml(tmp_path, monkeypatch, "bot: {entry: [python, bot.py]}\n")
    improve = load_settings(_env_file=None).improve
    assert improve.checks == list(HOST_CHECKS) and improve.protected_paths == list(HOST_PROTECTED_PATHS)
    _yaml(tmp_path, monkeypatch, "bot: {entry: [python, bot.py], checks: [pytest -q]}\n")
    assert load_settings(_env_file=None).improve.checks == ["pytest -q"]
    given = "improve: {checks: [make], protected_paths: [x/]}\n"
    _yaml(tmp_path, monkeypatch, f"bot: {{entry: [python, bot.py], checks: [pytest]}}\n{given}")
    improve = load_settings(_env_file=None).improve
    assert improve.checks == ["make"] and improve.protected_paths == ["x/"]


def test_the_replays_config_for_an_attached_bot_reads_back_as_its_section(tmp_path: Path) -> None:
    """The config the replay writes for an attached bot's launch reads back as that bot's `bot:` section,
    its checks left out: nothing is lost or refused on the way."""
    host = HostConfig(
        entry=["python", "bot.py"],
        bot_class="bot:ShopBot",
        extensions=["cogs.fun"],
        path=["src"],
        token_env="SHOP_TOKEN",
        env={"PREFIX": "?"},
        data_files=["shop.sqlite"],
        checks=["pytest -q"],
    )
    plan = ReplayPlan(cases=[], handlers=[], latency=False)
    _prepare(tmp_path, DiscordDouble(), plan, HostBot(host, tmp_path))
    settings = load_settings(tmp_path / "config.yaml", _env_file=None)
    assert settings.bot == msgspec.structs.replace(host, checks=None)
