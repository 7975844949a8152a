"""GitHubForge against the loopback GitHub double (REST + git over http) and a bare repository as remote."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed
from githubkit_schemas.latest.models import FullRepository, IssueComment, PullRequest
from pydantic import TypeAdapter

from mendbot.db import proposals
from mendbot.db.connection import open_database
from mendbot.deploy.merge import Merger
from mendbot.forge.base import Forge, ForgeError, HeadMovedError, MainMovedError, branch_head, merged_ref
from mendbot.forge.github import GitHubForge
from mendbot.improve.agent.workspace import Workspace
from mendbot.kernel.settings import load_settings
from mendbot.tools.doctor import _forge as doctor_forge_check
from mendbot.trust.sandbox import Sandbox
from tests.harness.github_double import GitHubDouble, full_repository, issue_comment, pull_request
from tests.harness.repo import git
from tests.test_forge_local import BRANCH, make_repo

TOKEN = "ghs_s3cr3tT0kenForTheDouble0000000000"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def bare(tmp_path: Path, repo: tuple[Path, str]) -> Path:
    """The "GitHub" side of the repository: main only, as before the bot pushes its branch."""
    path = tmp_path / "remote" / "mendbot.git"
    path.mkdir(parents=True)
    git(path, "init", "-q", "--bare", "-b", "main")
    git(repo[0], "push", "-q", str(path), "main")
    return path


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "mendbot.db")
    yield connection
    await connection.close()


@pytest.fixture
async def github(bare: Path) -> AsyncIterator[GitHubDouble]:
    async with GitHubDouble(bare, token=TOKEN) as double:
        yield double


def forge_for(repo: Path, db: aiosqlite.Connection, github: GitHubDouble, *, remote_url: str) -> GitHubForge:
    return GitHubForge(
        repo, db, repository=github.repository, token=TOKEN, api_url=github.api_url, remote_url=remote_url
    )


async def test_open_pushes_branch_then_opens_pull_request(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """The verified commit is pushed, then the PR is opened with head/base/title/body and the token."""
    root, sha = repo
    forge: Forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(
        run_id=7, branch=BRANCH, head_sha=sha, title="Fix roll", body="Diagnosis"
    )
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}") == sha
    [create] = github.rest_requests("POST", "/repos/octo/mendbot/pulls")
    assert create.json == {"head": BRANCH, "base": "main", "title": "Fix roll", "body": "Diagnosis"}
    assert create.headers["Authorization"] == f"token {TOKEN}"
    assert github.pulls[1]["head"]["sha"] == sha
    assert (proposal.forge, proposal.number, proposal.state) == ("github", 1, "open")
    assert proposal.url == "https://github.com/octo/mendbot/pull/1"
    assert await proposals.get(db, proposal.id) == proposal


async def test_push_over_http_sends_token_only_in_git_environment(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """Over http(s) git authenticates with the token, which is in neither argv nor any repository's config."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=github.git_url)
    argv, auth = forge.push_command(BRANCH, sha)
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert not any(TOKEN in arg or encoded in arg for arg in argv)
    assert auth == {f"http.{github.base_url}/.extraHeader": f"Authorization: Basic {encoded}"}

    await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}") == sha
    assert {r.headers.get("Authorization") for r in github.git_requests} == {f"Basic {encoded}"}
    for config in (root / ".git" / "config", bare / "config"):
        text = config.read_text()
        assert TOKEN not in text
        assert encoded not in text
        assert "extraheader" not in text.lower()


async def test_push_with_a_wrong_token_fails_without_showing_it(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A rejected push is a ForgeError naming git's complaint, with no token in it and no PR opened."""
    root, sha = repo
    wrong = "ghs_wrongwrongwrongwrong"
    forge = GitHubForge(
        root, db, repository=github.repository, token=wrong, api_url=github.api_url, remote_url=github.git_url
    )
    with pytest.raises(ForgeError, match="git push failed") as caught:
        await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    assert wrong not in str(caught.value)
    assert github.rest_requests("POST") == []
    assert await proposals.by_run(db, 7) == []


async def test_get_refreshes_state_from_github(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """get() reads the PR: merged on the website becomes "merged" in the stored row too."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    assert (await forge.get(proposal.id)).state == "open"
    github.set_merged(1)
    assert (await forge.get(proposal.id)).state == "merged"
    stored = await proposals.get(db, proposal.id)
    assert stored is not None and stored.state == "merged"
    assert len(github.rest_requests("GET", "/repos/octo/mendbot/pulls/1")) == 2


async def test_comment_posts_to_the_pull_request(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A comment is posted on the PR's issue thread."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    await forge.comment(proposal.id, "Checks passed: ruff, mypy, pytest")
    [posted] = github.rest_requests("POST", "/repos/octo/mendbot/issues/1/comments")
    assert posted.json == {"body": "Checks passed: ruff, mypy, pytest"}
    assert [c["body"] for c in github.comments] == ["Checks passed: ruff, mypy, pytest"]


async def test_close_comments_the_reason_and_closes(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """Closing posts the reason, closes the PR on GitHub and records the state."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    await forge.close(proposal.id, "rejected by alice")
    assert github.pulls[1]["state"] == "closed"
    assert [c["body"] for c in github.comments] == ["Closed: rejected by alice"]
    assert (await forge.get(proposal.id)).state == "closed"


async def test_rest_error_becomes_forge_error_with_githubs_message(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A 422 from GitHub is a ForgeError carrying its status and message; nothing is recorded."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    github.fail_next(
        422,
        {
            "message": "Validation Failed",
            "errors": [
                {"resource": "PullRequest", "code": "custom", "message": "No commits between main and x"}
            ],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422",
        },
    )
    with pytest.raises(ForgeError, match="Validation Failed: No commits between main and x") as caught:
        await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    assert caught.value.status == 422
    assert "(422)" in str(caught.value)
    assert await proposals.by_run(db, 7) == []


async def test_branch_moved_after_verification_is_not_pushed(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A branch no longer at the verified sha is refused before anything leaves the machine."""
    root, _ = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    with pytest.raises(ForgeError, match="not the verified commit"):
        await forge.open_proposal(run_id=7, branch=BRANCH, head_sha="0" * 40, title="t", body="b")
    assert git(bare, "branch", "--list", BRANCH) == ""
    assert github.requests == []


@pytest.mark.parametrize("userinfo", [f"x-access-token:{TOKEN}@", f"{TOKEN}@"])
def test_credentials_in_the_remote_url_are_refused(tmp_path: Path, userinfo: str) -> None:
    """A remote URL carrying the token is refused: it would end up in argv and .git/config."""
    with pytest.raises(ForgeError, match="must not carry credentials"):
        GitHubForge(
            tmp_path,
            None,  # type: ignore[arg-type]  # never reached
            repository="octo/mendbot",
            token=TOKEN,
            remote_url=f"https://{userinfo}github.com/octo/mendbot.git",
        )


async def test_double_refuses_a_pull_request_for_an_unpushed_branch(github: GitHubDouble) -> None:
    """The double, like GitHub, answers 422 when head is not a branch of the remote (so pushes are proven)."""
    async with GitHub(TOKEN, base_url=github.api_url, http_cache=False, auto_retry=False) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_create("octo", "mendbot", head=BRANCH, base="main", title="t", body="b")
        assert caught.value.response.status_code == 422
        repository = (await gh.rest.repos.async_get("octo", "mendbot")).parsed_data
    assert repository.full_name == "octo/mendbot"
    assert github.rest_requests("GET", "/repos/octo/mendbot")[0].headers["Authorization"] == f"token {TOKEN}"


def test_double_payloads_satisfy_githubkit_models() -> None:
    """Every payload the double serves validates against githubkit's models, optional fields included."""
    pull = pull_request(
        "octo",
        "mendbot",
        3,
        head=BRANCH,
        head_sha="a" * 40,
        base="main",
        base_sha="b" * 40,
        title="t",
        body="b",
    )
    parsed = TypeAdapter(PullRequest).validate_python(pull)
    assert (parsed.number, parsed.head.sha, parsed.merged) == (3, "a" * 40, False)
    assert (
        TypeAdapter(FullRepository).validate_python(full_repository("octo", "mendbot")).default_branch
        == "main"
    )
    merged = TypeAdapter(PullRequest).validate_python({**pull, "state": "closed", "merged": True})
    assert merged.merged is True
    assert (
        TypeAdapter(IssueComment).validate_python(issue_comment("octo", "mendbot", 3, 1, "hi")).body == "hi"
    )


async def test_doctor_reaches_the_repository_through_a_custom_api_url(
    tmp_path: Path, github: GitHubDouble
) -> None:
    """`mendbot doctor`'s forge check reads the repository through forge.api_url (GitHub Enterprise style)."""
    settings = load_settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        github_token=TOKEN,
        forge={"kind": "github", "repository": github.repository, "api_url": github.api_url},
    )
    check = await doctor_forge_check(settings)
    assert check.ok, check.detail
    assert check.detail == "GitHub octo/mendbot"


# -- merging


def push_from_elsewhere(tmp_path: Path, bare: Path, branch: str, path: str, text: str) -> str:
    """Someone else commits `text` to `path` on `branch` in their own clone and pushes it; returns the sha."""
    other = tmp_path / f"elsewhere-{len(list(tmp_path.glob('elsewhere-*')))}"
    git(tmp_path, "clone", "-q", "-b", branch, str(bare), str(other))
    (other / path).write_text(text)
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", f"someone else's {path}")
    git(other, "push", "-q", "origin", branch)
    return git(other, "rev-parse", "HEAD")


def merger_for(root: Path, tmp_path: Path) -> Merger:
    return Merger(root, Workspace(root, tmp_path / "worktrees"), [], 60, Sandbox(), smoke=False)


async def test_merge_with_the_sha_guard_then_the_live_checkout_fast_forwards(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """The PR is merged with sha=<approved head>; the merge commit is fetched (with the token) and the live
    checkout fast-forwards to it."""
    root, sha = repo
    main_before = git(bare, "rev-parse", "main")
    forge: Forge = forge_for(root, db, github, remote_url=github.git_url)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="Fix roll", body="b")
    result = await forge.merge(proposal.id, sha)

    [put] = github.rest_requests("PUT", "/repos/octo/mendbot/pulls/1/merge")
    assert put.json == {"sha": sha, "merge_method": "merge"}
    assert (result.main_before, result.already_merged) == (main_before, False)
    assert git(bare, "rev-parse", "main") == result.merged_sha
    assert git(bare, "rev-list", "--parents", "-n", "1", result.merged_sha).split()[1:] == [main_before, sha]
    assert git(root, "rev-parse", merged_ref(proposal.id)) == result.merged_sha
    assert (await forge.get(proposal.id)).state == "merged"
    assert github.pulls[1]["merged"] is True
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert {r.headers.get("Authorization") for r in github.git_requests} == {f"Basic {encoded}"}
    assert git(root, "rev-parse", "main") == main_before  # the forge moved no file

    live = await merger_for(root, tmp_path).update_live_checkout(result.merged_sha)
    assert live.ok, live.reason
    assert live.changed_files == ["roll.py"]
    assert git(root, "rev-parse", "main") == git(bare, "rev-parse", "main")
    assert git(root, "status", "--porcelain") == ""
    assert (root / "roll.py").read_text() == "def roll():\n    return 4\n"


async def test_merge_is_refused_with_409_when_the_head_moved_on_github(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A push to the PR branch after approval makes GitHub answer 409: HeadMovedError, nothing merged."""
    root, sha = repo
    main_before = git(bare, "rev-parse", "main")
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    push_from_elsewhere(tmp_path, bare, BRANCH, "roll.py", "def roll():\n    return 9\n")
    with pytest.raises(HeadMovedError, match="Head branch was modified") as caught:
        await forge.merge(proposal.id, sha)
    assert caught.value.status == 409
    assert git(bare, "rev-parse", "main") == main_before
    assert github.pulls[1]["merged"] is False
    assert (await forge.get(proposal.id)).state == "open"


async def test_merge_raises_main_moved_when_main_on_github_moved(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """Main on GitHub is fetched first: not an ancestor of the head is MainMovedError, before any merge."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    moved = push_from_elsewhere(tmp_path, bare, "main", "README", "hello\n")
    with pytest.raises(MainMovedError) as caught:
        await forge.merge(proposal.id, sha)
    assert caught.value.main_sha == moved
    assert github.rest_requests("PUT") == []
    assert git(root, "cat-file", "-t", moved) == "commit"  # fetched: the Merger can rebase onto it


async def test_a_rebased_head_is_pushed_with_a_lease_then_merged(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """After main moved, the Merger rebases onto GitHub's main; merge pushes the new head over the old and
    merges it."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    push_from_elsewhere(tmp_path, bare, "main", "README", "hello\n")
    with pytest.raises(MainMovedError) as caught:
        await forge.merge(proposal.id, sha)
    outcome = await merger_for(root, tmp_path).rebase_and_reverify(
        BRANCH, "", sha, 7, onto=caught.value.main_sha
    )
    assert outcome.verification.ok and not outcome.diff_changed

    result = await forge.merge(proposal.id, outcome.new_sha)
    assert git(bare, "rev-parse", BRANCH) == outcome.new_sha
    assert git(bare, "rev-list", "--parents", "-n", "1", result.merged_sha).split()[2] == outcome.new_sha
    assert result.main_before == caught.value.main_sha
    assert (await forge.get(proposal.id)).head_sha == outcome.new_sha


async def test_a_rebased_head_does_not_overwrite_someone_elses_push(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """The lease is the head the proposal had: a push by someone else in between wins, and nothing merges."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    moved = push_from_elsewhere(tmp_path, bare, "main", "README", "hello\n")
    assert await forge.main_sha() == moved  # fetched into the bot's repository
    outcome = await merger_for(root, tmp_path).rebase_and_reverify(BRANCH, "", sha, 7, onto=moved)
    theirs = push_from_elsewhere(tmp_path, bare, BRANCH, "other.txt", "theirs\n")
    with pytest.raises(HeadMovedError, match="no longer at"):
        await forge.merge(proposal.id, outcome.new_sha)
    assert git(bare, "rev-parse", BRANCH) == theirs
    assert github.rest_requests("PUT") == []


async def test_merging_again_finds_the_earlier_merge_commit(
    repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A merged PR merged again returns its merge commit (found on main if the local ref is gone)."""
    root, sha = repo
    forge = forge_for(root, db, github, remote_url=bare.as_uri())
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    first = await forge.merge(proposal.id, sha)
    git(root, "update-ref", "-d", merged_ref(proposal.id))
    again = await forge.merge(proposal.id, sha)
    assert (again.merged_sha, again.main_before, again.already_merged) == (
        first.merged_sha,
        first.main_before,
        True,
    )
    assert len(github.rest_requests("PUT")) == 1


def test_push_command_with_a_lease_names_the_old_head(tmp_path: Path) -> None:
    """A re-push after a rebase is `--force-with-lease=refs/heads/<branch>:<old sha>`, never a bare force."""
    forge = GitHubForge(
        tmp_path,
        None,  # type: ignore[arg-type]  # never reached
        repository="octo/mendbot",
        token=TOKEN,
        remote_url="https://github.com/octo/mendbot.git",
    )
    argv, _ = forge.push_command(BRANCH, "b" * 40, lease="a" * 40)
    assert f"--force-with-lease=refs/heads/{BRANCH}:{'a' * 40}" in argv
    assert not any(arg in ("--force", "-f") for arg in argv)
    assert argv[-1] == f"{'b' * 40}:refs/heads/{BRANCH}"


def _bot_clone(tmp_path: Path, bare: Path) -> Path:
    """The bot's own checkout when runs execute on a worker: main from GitHub, no run branches."""
    root = tmp_path / "bot"
    git(tmp_path, "clone", "-q", str(bare), str(root))
    return root


async def test_a_proposal_pushed_from_another_clone_is_fetched_then_merged(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A worker's proposal (opened from its own clone) becomes a branch of the bot's repository at the
    pushed head when asked for — once: asked again, nothing is fetched — and then merges as any other."""
    worker_root, sha = repo
    worker = forge_for(worker_root, db, github, remote_url=github.git_url)
    proposal = await worker.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    bot_root = _bot_clone(tmp_path, bare)
    bot = forge_for(bot_root, db, github, remote_url=github.git_url)
    assert await branch_head(bot_root, BRANCH) is None
    await bot.fetch_proposal(proposal.id)
    assert git(bot_root, "rev-parse", BRANCH) == sha
    requests = len(github.git_requests)
    await bot.fetch_proposal(proposal.id)
    assert len(github.git_requests) == requests
    result = await bot.merge(proposal.id, sha)
    assert git(bare, "rev-parse", "main") == result.merged_sha
    assert git(bot_root, "rev-parse", merged_ref(proposal.id)) == result.merged_sha


async def test_a_proposal_branch_moved_on_github_is_fetched_at_its_new_head(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """Someone pushed to the branch on GitHub before the bot fetched it: the bot's branch is at their
    commit, a branch that moved (what nobody verified is not taken for the verified head)."""
    worker_root, sha = repo
    worker = forge_for(worker_root, db, github, remote_url=bare.as_uri())
    proposal = await worker.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    moved = push_from_elsewhere(tmp_path, bare, BRANCH, "roll.py", "def roll():\n    return 9\n")
    bot_root = _bot_clone(tmp_path, bare)
    await forge_for(bot_root, db, github, remote_url=bare.as_uri()).fetch_proposal(proposal.id)
    assert git(bot_root, "rev-parse", BRANCH) == moved != sha


async def test_a_proposal_branch_gone_from_github_cannot_be_fetched(
    tmp_path: Path, repo: tuple[Path, str], bare: Path, db: aiosqlite.Connection, github: GitHubDouble
) -> None:
    """A branch deleted on GitHub is a ForgeError naming it, and no branch appears in the bot's repository."""
    worker_root, sha = repo
    worker = forge_for(worker_root, db, github, remote_url=bare.as_uri())
    proposal = await worker.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    git(bare, "branch", "-q", "-D", BRANCH)
    bot_root = _bot_clone(tmp_path, bare)
    with pytest.raises(ForgeError, match=BRANCH):
        await forge_for(bot_root, db, github, remote_url=bare.as_uri()).fetch_proposal(proposal.id)
    assert await branch_head(bot_root, BRANCH) is None
