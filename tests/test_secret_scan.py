"""The diff secret scan: what a run must not add, in any form or split over lines, and what it may."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from mendbot.trust.redact import secret_forms
from mendbot.trust.secret_scan import scan_for_secrets
from tests.harness.repo import PROJECT, git

# Built at run time so this file holds no token-shaped literal of its own.
DISCORD_TOKEN = "M" + "TIzNDU2Nzg5MDEyMzQ1Njc4" + "." + "GhIjKl" + "." + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM"
ANTHROPIC_HEAD = "sk-" + "ant-"
# The bot's own value, of no token shape: only knowing it can catch it. Its base64 holds '+' and '/'
# (and is padded), and it needs percent-encoding, with a space that quote and quote_plus write apart.
SECRET = "Vx9 qL2/wörd+mR?=&ÿÿ~7tw!"
FOUND = "a secret value of this bot"


def _new_file(path: str, text: str) -> str:
    """The git diff that adds `path` holding `text`."""
    lines = text.splitlines()
    header = [f"diff --git a/{path} b/{path}", "new file mode 100644", "--- /dev/null", f"+++ b/{path}"]
    return "\n".join([*header, f"@@ -0,0 +1,{len(lines)} @@", *(f"+{line}" for line in lines)]) + "\n"


def _b64(raw: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


def _blob(shift: int, urlsafe: bool = False) -> tuple[str, int]:
    """The base64 of SECRET between random bytes, `shift` bytes into a group; and where it starts."""
    rng = random.Random(shift)
    before = bytes(rng.randrange(256) for _ in range(42 + shift))
    after = bytes(rng.randrange(256) for _ in range(40))
    return _b64(before + SECRET.encode() + after, urlsafe), -(-8 * len(before) // 6)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on main with one committed file."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hello')\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def _diff(repo: Path, changes: dict[str, str | None]) -> str:
    """Apply `changes` (None deletes) to the repo, commit, and return that commit's diff."""
    for name, content in changes.items():
        target = repo / name
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "show", "--format=", "HEAD")


# -- token shapes, secret names and files ---------------------------------------------------------


def test_scan_finds_an_added_token_and_an_added_env_file(repo: Path) -> None:
    """A Discord-token-shaped string on an added line and an added .env file are both reported."""
    diff = _diff(
        repo,
        {
            "app.py": f"print('hello')\nTOKEN_IN_CODE = '{DISCORD_TOKEN}'\n",
            ".env": "DISCORD_TOKEN=x\n",
            "config/.env.example": "DISCORD_TOKEN=\n",
        },
    )

    findings = scan_for_secrets(diff)

    assert "app.py:2: Discord bot token" in findings
    assert any(f.startswith(".env: adds an environment file") for f in findings)
    assert not any("example" in f for f in findings)
    assert all(DISCORD_TOKEN not in f for f in findings)


def test_scan_ignores_removed_secrets_and_normal_lines(repo: Path) -> None:
    """Removing a .env or a token line is a cleanup, not a leak; ordinary code is not flagged."""
    _diff(repo, {".env": "DISCORD_TOKEN=x\n", "app.py": f"T = '{DISCORD_TOKEN}'\n"})
    diff = _diff(
        repo,
        {
            ".env": None,
            "app.py": "token = settings.discord_token.get_secret_value()\nprint('hello')\n",
            "notes.md": "++ a line that looks like a header\nmonkey_key = 'banana split sundae'\n",
        },
    )

    assert scan_for_secrets(diff) == []


def test_scan_flags_random_values_assigned_to_secret_names() -> None:
    """High-entropy values assigned to token/secret/key/password names are flagged; placeholders are not."""
    diff = "\n".join(
        [
            "diff --git a/settings.py b/settings.py",
            "--- a/settings.py",
            "+++ b/settings.py",
            "@@ -1,1 +1,6 @@",
            " import os",
            '+API_KEY = "q8Zr2LmX0vT4yWc7NpB5"',
            '+db_password: str = "7hG2kP9xQ4mZ1wR8"',
            '+api_key = "your-api-key-here-please"',
            '+fingerprint = "9f8e7d6c5b4a39281706"',
            "+-----BEGIN OPENSSH PRIVATE KEY-----",
        ]
    )

    assert scan_for_secrets(diff) == [
        "settings.py:2: high-entropy value assigned to 'API_KEY'",
        "settings.py:3: high-entropy value assigned to 'db_password'",
        "settings.py:6: private key block",
    ]


# -- the bot's own secret values ------------------------------------------------------------------


def test_the_secret_needs_every_encoding() -> None:
    """The test value really exercises both base64 alphabets, padding and both percent-encodings."""
    raw = SECRET.encode()
    assert _b64(raw) != _b64(raw, urlsafe=True)
    assert _b64(raw).endswith("=")
    assert quote(SECRET, safe="") != quote_plus(SECRET) != SECRET


FORMS: dict[str, tuple[Callable[[str], str], str]] = {
    "plain": (lambda value: value, "plain"),
    "base64": (lambda value: _b64(value.encode()), "base64"),
    "base64-unpadded": (lambda value: _b64(value.encode()).rstrip("="), "base64"),
    "urlsafe": (lambda value: _b64(value.encode(), urlsafe=True), "URL-safe base64"),
    "urlsafe-unpadded": (lambda value: _b64(value.encode(), urlsafe=True).rstrip("="), "URL-safe base64"),
    "hex": (lambda value: value.encode().hex(), "hex"),
    "HEX": (lambda value: value.encode().hex().upper(), "hex"),
    "quote": (lambda value: quote(value, safe=""), "percent-encoded"),
    "quote_plus": (quote_plus, "percent-encoded"),
}


@pytest.mark.parametrize("form", FORMS)
def test_the_bots_secret_is_found_in_every_form(form: str) -> None:
    """Each form of a known value on an added line is reported with its encoding."""
    encode, encoding = FORMS[form]
    diff = _new_file("notes.txt", f"callback settings\nvalue: {encode(SECRET)} # copied\n")

    assert scan_for_secrets(diff, [SECRET]) == [f"notes.txt:2: {FOUND} ({encoding})"]


@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("shift", [0, 1, 2])
def test_the_bots_secret_inside_a_base64_blob_is_found(shift: int, urlsafe: bool) -> None:
    """A known value encoded inside a bigger base64 blob, at any byte alignment, is reported."""
    blob, _ = _blob(shift, urlsafe)
    encoding = "URL-safe base64" if urlsafe else "base64"

    findings = scan_for_secrets(_new_file("payload.json", f'{{"data": "{blob}"}}\n'), [SECRET])

    assert findings == [f"payload.json:1: {FOUND} ({encoding})"]


def test_a_value_under_eight_characters_is_not_looked_for() -> None:
    """A short or empty value would match ordinary text, so it is ignored."""
    diff = _new_file("app.py", "password = 'hunter2'\nprint('')\n")

    assert scan_for_secrets(diff, ["hunter2", ""]) == []


def test_removed_and_context_lines_holding_the_secret_are_not_flagged(repo: Path) -> None:
    """A known value on a removed line or an untouched neighbouring line is not something the diff adds."""
    _diff(repo, {"notes.txt": f"keep {SECRET}\ndrop {SECRET.encode().hex()}\n"})
    diff = _diff(repo, {"notes.txt": f"keep {SECRET}\nreplaced\n"})

    assert scan_for_secrets(diff, [SECRET]) == []


# -- values split over lines ----------------------------------------------------------------------


def test_a_token_shape_split_across_two_lines_is_found() -> None:
    """An API key written as two implicitly joined literals is reported where it starts."""
    key = f"{ANTHROPIC_HEAD}api03-Xc" + "q8Zr2LmX0vT4yWc7NpB5kd9"
    diff = _new_file("cfg.py", f'import os\nKEY = ("{key[:15]}"\n       "{key[15:]}")\n')

    assert scan_for_secrets(diff) == ["cfg.py:2: Anthropic API key, split across lines"]


def test_a_token_shape_split_across_three_lines_is_found() -> None:
    """A Discord token cut into three `+`-continued pieces is reported where it starts."""
    pieces = DISCORD_TOKEN[:20], DISCORD_TOKEN[20:45], DISCORD_TOKEN[45:]
    text = f'login = "{pieces[0]}" + \\\n    "{pieces[1]}" + \\\n    "{pieces[2]}"\nprint(login)\n'

    assert scan_for_secrets(_new_file("run.py", text)) == ["run.py:1: Discord bot token, split across lines"]


def test_a_token_shape_built_from_literals_on_one_line_is_found() -> None:
    """String literals joined on one line make the same token as one literal would."""
    text = f'T = "{DISCORD_TOKEN[:10]}" + "{DISCORD_TOKEN[10:]}"\n'

    assert scan_for_secrets(_new_file("t.py", text)) == ["t.py:1: Discord bot token"]


def test_the_bots_secret_split_across_lines_is_found() -> None:
    """A known value cut in two, in a parenthesised pair of literals, is reported."""
    text = f'value = (\n    "{SECRET[:11]}"\n    "{SECRET[11:]}"\n)\n'

    assert scan_for_secrets(_new_file("v.py", text), [SECRET]) == [
        f"v.py:2: {FOUND} (plain), split across lines"
    ]


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_a_base64_blob_wrapped_at_60_columns_is_found(shift: int) -> None:
    """A blob holding a known value, wrapped like a PEM body, is reported at the line the value starts."""
    blob, start = _blob(shift)
    lines = [blob[at : at + 60] for at in range(0, len(blob), 60)]

    findings = scan_for_secrets(_new_file("blob.b64", "\n".join(lines) + "\n"), [SECRET])

    assert findings == [f"blob.b64:{start // 60 + 1}: {FOUND} (base64), split across lines"]


def test_a_base64_plus_at_a_line_break_is_data_not_concatenation() -> None:
    """A standard-base64 '+' that ends a wrapped line is kept when the lines are rejoined."""
    encoded = _b64(SECRET.encode())
    cut = encoded.index("+") + 1
    text = f"{encoded[:cut]}\n{encoded[cut:]}\n"

    findings = scan_for_secrets(_new_file("wrapped.txt", text), [SECRET])

    assert findings == [f"wrapped.txt:1: {FOUND} (base64), split across lines"]


def test_a_hex_dump_wrapped_across_lines_is_found() -> None:
    """Upper-case hex of a known value wrapped at 16 columns is reported."""
    encoded = SECRET.encode().hex().upper()
    text = "\n".join(encoded[at : at + 16] for at in range(0, len(encoded), 16)) + "\n"

    assert scan_for_secrets(_new_file("dump.hex", text), [SECRET]) == [
        f"dump.hex:1: {FOUND} (hex), split across lines"
    ]


def test_literals_followed_by_code_are_not_joined_into_a_token() -> None:
    """A token prefix concatenated with a call, or listed beside other literals, is ordinary code."""
    text = (
        f'key = "{ANTHROPIC_HEAD}api03-" + make_rest(rng, 95, alphabet)\n'
        f'prefixes = ("{ANTHROPIC_HEAD}", "ghp_", "abcdefghijklmnopqrstuvwxyz")\n'
    )

    assert scan_for_secrets(_new_file("gen.py", text)) == []


def test_the_bots_own_source_added_whole_is_not_flagged() -> None:
    """Every module of bot/, added as new files, gives no finding: ordinary code is not a secret."""
    diff = "".join(
        _new_file(path.relative_to(PROJECT).as_posix(), path.read_text())
        for path in sorted((PROJECT / "bot").rglob("*.py"))
    )

    assert scan_for_secrets(diff, [SECRET]) == []


def test_a_finding_never_holds_any_part_of_the_secret() -> None:
    """Findings for every form and split name the place and kind, never eight characters of a value."""
    diffs = [_new_file(f"f{n}.txt", f"{encode(SECRET)}\n") for n, (encode, _) in enumerate(FORMS.values())]
    diffs += [_new_file(f"blob{shift}.txt", _blob(shift)[0] + "\n") for shift in range(3)]
    diffs.append(_new_file("split.py", f'x = ("{SECRET[:11]}"\n     "{SECRET[11:]}")\n'))
    diffs.append(_new_file("t.py", f'T = ("{DISCORD_TOKEN[:30]}"\n     "{DISCORD_TOKEN[30:]}")\n'))

    findings = scan_for_secrets("".join(diffs), [SECRET])

    assert len(findings) == len(diffs)
    values = [*secret_forms(SECRET), DISCORD_TOKEN]
    pieces = {value[at : at + 8] for value in values for at in range(len(value) - 7)}
    assert not [piece for piece in pieces for finding in findings if piece in finding]
