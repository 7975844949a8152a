"""The diff secret scan: what a run must not add, and what it may."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.improve import workspace
from bot.improve.secret_scan import scan_for_secrets
from tests.harness.repo import git

# Built at run time so this file holds no token-shaped literal of its own.
DISCORD_TOKEN = "M" + "TIzNDU2Nzg5MDEyMzQ1Njc4" + "." + "GhIjKl" + "." + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM"


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


def test_workspace_still_exports_the_scan() -> None:
    """Callers that import the scan from the workspace module get the same function."""
    assert workspace.scan_for_secrets is scan_for_secrets
