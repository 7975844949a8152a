"""mendbot.kernel.git: the bot's own git executes nothing a repository's config or a worktree's attributes
name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mendbot.kernel.git import GitError, git, git_environment


def _plain_git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def trapped(tmp_path: Path) -> tuple[Path, Path]:
    """A repository whose config and attributes name a program for every hook git offers."""
    repo, marker = tmp_path / "repo", tmp_path / "ran"
    repo.mkdir()
    _plain_git(repo, "init", "-q", "-b", "main")
    (repo / "f.txt").write_text("one\n")
    _plain_git(repo, "add", "f.txt")
    _plain_git(repo, "commit", "-qm", "one")
    trap = tmp_path / "trap.sh"
    trap.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat "$@" 2>/dev/null\n')
    trap.chmod(0o755)
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    for key, value in {
        "core.fsmonitor": str(trap),
        "core.pager": str(trap),
        "diff.external": str(trap),
        "diff.evil.textconv": str(trap),
        "credential.helper": str(trap),
        "core.sshCommand": str(trap),
        "gpg.program": str(trap),
        "commit.gpgSign": "true",
    }.items():
        _plain_git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("*.txt diff=evil\n")
    (repo / "f.txt").write_text("two\n")
    return repo, marker


async def test_diff_log_show_status_and_commit_run_no_configured_program(trapped: tuple[Path, Path]) -> None:
    """Hooks, fsmonitor, pager, external diff, textconv and gpg named in the repo never run."""
    repo, marker = trapped
    diff = await git(repo, "diff")
    assert "+two" in diff.output
    await git(repo, "status", "--porcelain")
    await git(repo, "add", "-A")
    await git(repo, "commit", "-qm", "two")
    await git(repo, "log", "-p", "-1")
    await git(repo, "show", "HEAD")
    await git(repo, "worktree", "add", "-q", "--detach", str(repo.parent / "wt"), "HEAD")
    assert not marker.exists(), marker.read_text()


def test_environment_holds_no_secret_of_the_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Git starts from an empty environment: the bot's tokens and GIT_* overrides never reach it."""
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    monkeypatch.setenv("GIT_SSH_COMMAND", "evil")
    env = git_environment()
    assert "discord-secret" not in env.values()
    assert "GIT_DIR" not in env and "GIT_SSH_COMMAND" not in env
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull


def test_extra_config_cannot_undo_the_neutralising() -> None:
    """Config a caller adds comes first; the neutralising pairs after it win."""
    env = git_environment(config={"core.hooksPath": "/tmp/hooks"})
    keys = [env[f"GIT_CONFIG_KEY_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))]
    values = [env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))]
    assert keys[0] == "core.hooksPath" and values[0] == "/tmp/hooks"
    assert keys.index("core.hooksPath", 1) > 0 and values[keys.index("core.hooksPath", 1)] == "/dev/null"
    with pytest.raises(ValueError, match="config"):
        git_environment(extra={"GIT_CONFIG_COUNT": "0"})


async def test_failure_names_the_command_and_masks_secrets(tmp_path: Path) -> None:
    """A failing command raises the caller's error with git's reason and no secret in it."""
    with pytest.raises(GitError, match="git rev-parse failed") as caught:
        await git(tmp_path, "rev-parse", "--verify", "hunter2-branch", secrets=["hunter2"])
    assert "hunter2" not in str(caught.value)


async def test_git_process_really_receives_no_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What git and anything it starts actually see holds none of the bot's tokens or GIT_* overrides."""
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret")
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", "/evil")
    result = await git(tmp_path, "-c", "alias.envdump=!env", "envdump")
    seen = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    assert "discord-secret" not in result.output
    assert "DISCORD_TOKEN" not in seen and "GIT_EXTERNAL_DIFF" not in seen
    assert seen["GIT_CONFIG_NOSYSTEM"] == "1"


def test_gitpython_would_hand_git_the_bots_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Why mendbot.kernel.git does not run git through GitPython: its processes inherit the bot's environment.

    If this starts failing, GitPython can start from an empty environment and mendbot.kernel.git may move to
    it.
    """
    import git as gitpython

    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret")
    output = gitpython.Git(str(tmp_path)).execute(
        ["git", "-c", "alias.envdump=!env", "envdump"], env=git_environment()
    )
    assert "discord-secret" in str(output)
