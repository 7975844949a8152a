"""GitHubForge: push the verified branch, open a pull request with githubkit, comment, refresh, close,
merge.

The token reaches git only through the environment of the one `git push` or `git fetch` process,
as an `http.<origin>/.extraHeader` passed in `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n` (see `mendbot.kernel.git`):
it is never in argv (process listings), never written to a repository's config, and only sent
to the remote's own origin. The coding agent never holds it (DESIGN §6); only this class does.

Merging: main on GitHub is fetched into `refs/mendbot/upstream/<base>`; if it is not an ancestor
of the approved head, MainMovedError (rebase and re-verify first). A head that the Merger rebased
and re-verified locally is pushed with `--force-with-lease=<branch>:<the head GitHub has>`, so a
push by anyone else in between makes it fail instead of being overwritten. Then the pull request
is merged with `sha=<approved head>`: GitHub itself refuses (409) if the head moved since, which
becomes HeadMovedError. The merge commit is fetched and left at `refs/mendbot/merged/<id>` for the
deploy step to fast-forward the live checkout to.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mendbot.db import proposals
from mendbot.db.core import Connection
from mendbot.forge.base import (
    GIT_TIMEOUT_S,
    ForgeError,
    HeadMovedError,
    MainMovedError,
    MergeResult,
    Proposal,
    ProposalState,
    branch_head,
    is_ancestor,
    merged_ref,
    require_branch_at,
    resolve_commit,
    run_git,
    utcnow,
)
from mendbot.kernel.log import get_logger

if TYPE_CHECKING:
    from githubkit import GitHub

__all__ = ["UPSTREAM_REF_PREFIX", "GitHubForge"]

UPSTREAM_REF_PREFIX = "refs/mendbot/upstream/"  # where main on GitHub is fetched to

log = get_logger(__name__)


class GitHubForge:
    """Proposals as GitHub pull requests (see the module docstring)."""

    name = "github"

    def __init__(
        self,
        repo_root: Path,
        db: Connection,
        *,
        repository: str,
        token: str,
        api_url: str = "https://api.github.com",
        remote_url: str,
        base: str = "main",
        clock: Callable[[], datetime] = utcnow,
        push_timeout_s: float = GIT_TIMEOUT_S,
    ) -> None:
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ForgeError(f"forge.repository must be 'owner/name', not {repository!r}")
        if not token:
            raise ForgeError("GitHubForge needs a token (GITHUB_TOKEN)")
        remote = urlsplit(remote_url)
        if remote.password or (remote.scheme in ("http", "https") and remote.username):
            # argv and .git/config are readable by anyone who can list processes or the repo.
            raise ForgeError("the remote URL must not carry credentials; the token is passed separately")
        self.repo_root = repo_root
        self.repository = repository
        self.api_url = api_url
        self.remote_url = remote_url
        self.base = base
        self._owner, self._name = owner, name
        self._db = db
        self._token = token
        self._clock = clock
        self._push_timeout_s = push_timeout_s
        self._merge_lock = asyncio.Lock()

    # -- the Forge protocol

    async def open_proposal(
        self, *, run_id: int, branch: str, head_sha: str, title: str, body: str
    ) -> Proposal:
        await require_branch_at(self.repo_root, branch, head_sha)
        await self.push(branch, head_sha)
        from githubkit.exception import GitHubException

        async with self._client() as gh:
            try:
                response = await gh.rest.pulls.async_create(
                    self._owner, self._name, head=branch, base=self.base, title=title, body=body
                )
                pull = response.parsed_data
            except (GitHubException, ValueError) as exc:
                raise _forge_error(f"opening a pull request for {branch}", exc) from exc
        proposal = await proposals.insert(
            self._db,
            run_id=run_id,
            forge=self.name,
            branch=branch,
            head_sha=head_sha,
            title=title,
            body=body,
            url=pull.html_url,
            number=pull.number,
            now=self._now(),
        )
        log.info(
            "proposal_opened", forge=self.name, proposal_id=proposal.id, run_id=run_id, url=pull.html_url
        )
        return proposal

    async def get(self, proposal_id: int) -> Proposal:
        proposal = await self._stored(proposal_id)
        if proposal.forge != self.name or proposal.number is None:
            return proposal  # nothing on GitHub to refresh from
        from githubkit.exception import GitHubException

        async with self._client() as gh:
            try:
                pull = (await gh.rest.pulls.async_get(self._owner, self._name, proposal.number)).parsed_data
            except (GitHubException, ValueError) as exc:
                raise _forge_error(f"reading pull request #{proposal.number}", exc) from exc
        state: ProposalState = "merged" if pull.merged else pull.state
        if pull.head.sha != proposal.head_sha:
            # Someone pushed to the branch: the stored head stays the verified one, so the
            # merge's SHA guard refuses what nobody verified.
            log.warning(
                "proposal_head_moved", proposal_id=proposal_id, verified=proposal.head_sha, now=pull.head.sha
            )
        if state == proposal.state:
            return proposal
        updated = await proposals.update(self._db, proposal_id, state=state, now=self._now())
        assert updated is not None
        return updated

    async def comment(self, proposal_id: int, text: str) -> None:
        number = await self._number(proposal_id)
        from githubkit.exception import GitHubException

        async with self._client() as gh:
            try:
                await gh.rest.issues.async_create_comment(self._owner, self._name, number, body=text)
            except GitHubException as exc:
                raise _forge_error(f"commenting on pull request #{number}", exc) from exc

    async def close(self, proposal_id: int, reason: str) -> None:
        proposal = await self.get(proposal_id)
        if proposal.state == "closed":
            return
        if proposal.state == "merged":
            raise ForgeError(f"proposal {proposal_id} is already merged; it cannot be closed")
        number = await self._number(proposal_id)
        await self.comment(proposal_id, f"Closed: {reason}")
        from githubkit.exception import GitHubException

        async with self._client() as gh:
            try:
                await gh.rest.pulls.async_update(self._owner, self._name, number, state="closed")
            except GitHubException as exc:
                raise _forge_error(f"closing pull request #{number}", exc) from exc
        await proposals.update(self._db, proposal_id, state="closed", now=self._now())
        log.info("proposal_closed", forge=self.name, proposal_id=proposal_id, reason=reason)

    async def main_sha(self) -> str:
        """Fetch main from GitHub into `refs/mendbot/upstream/<base>` and return where it is."""
        upstream = f"{UPSTREAM_REF_PREFIX}{self.base}"
        await self._fetch(f"+refs/heads/{self.base}:{upstream}")
        return await run_git(self.repo_root, "rev-parse", "--verify", f"{upstream}^{{commit}}")

    async def fetch_proposal(self, proposal_id: int) -> None:
        """Bring the proposal's branch into the bot's repository when it is not there: a worker
        (`improve.run_on: workers`) pushed it from a clone of its own. A branch that is here already
        is left alone (the run was executed here, or it was fetched before); one fetched at another
        head than the verified one is a branch that moved, as if someone committed to it here."""
        proposal = await self._stored(proposal_id)
        if await branch_head(self.repo_root, proposal.branch) is not None:
            return
        await self._fetch(f"refs/heads/{proposal.branch}:refs/heads/{proposal.branch}")
        log.info("proposal_branch_fetched", proposal_id=proposal_id, branch=proposal.branch)

    async def _fetch(self, refspec: str) -> None:
        await run_git(
            self.repo_root,
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            self.remote_url,
            refspec,
            config=self._auth_config(),
            timeout_s=self._push_timeout_s,
            secrets=(self._token, self._basic_credentials()),
        )

    async def merge(self, proposal_id: int, expected_head_sha: str) -> MergeResult:
        """Merge the pull request at exactly `expected_head_sha` (see the module docstring)."""
        async with self._merge_lock:
            proposal = await self.get(proposal_id)
            number = await self._number(proposal_id)
            if proposal.state == "merged":
                return await self._merged_already(proposal, number, expected_head_sha)
            if proposal.state == "closed":
                raise ForgeError(f"proposal {proposal_id} is closed; it cannot be merged")
            main = await self.main_sha()
            if not await is_ancestor(self.repo_root, main, expected_head_sha):
                raise MainMovedError(
                    f"{self.base} on GitHub moved to {main[:12]} since proposal {proposal_id} was"
                    " verified; it must be rebased and verified again",
                    main_sha=main,
                )
            if proposal.head_sha != expected_head_sha:
                await self._push_rebased(proposal, expected_head_sha)
            from githubkit.exception import GitHubException

            async with self._client() as gh:
                try:
                    response = await gh.rest.pulls.async_merge(
                        self._owner, self._name, number, sha=expected_head_sha, merge_method="merge"
                    )
                    merged_sha = response.parsed_data.sha
                except (GitHubException, ValueError) as exc:
                    error = _forge_error(f"merging pull request #{number}", exc)
                    if error.status == 409:
                        raise HeadMovedError(
                            f"{error} — the pull request's head is no longer the approved commit"
                            f" {expected_head_sha[:12]}; nothing was merged",
                            status=409,
                        ) from exc
                    raise error from exc
            await self._fetch_merged(proposal_id, merged_sha)
            await proposals.update(
                self._db, proposal_id, state="merged", head_sha=expected_head_sha, now=self._now()
            )
        log.info(
            "proposal_merged", forge=self.name, proposal_id=proposal_id, sha=merged_sha, main_before=main
        )
        return MergeResult(merged_sha=merged_sha, main_before=main)

    async def _push_rebased(self, proposal: Proposal, head_sha: str) -> None:
        """Push a head the Merger rebased and re-verified, only over the head the proposal had."""
        actual = await branch_head(self.repo_root, proposal.branch)
        if actual != head_sha:
            raise HeadMovedError(
                f"branch {proposal.branch!r} is at {(actual or 'nothing')[:12]} locally, not the approved"
                f" commit {head_sha[:12]}; nothing was pushed or merged"
            )
        try:
            await self.push(proposal.branch, head_sha, lease=proposal.head_sha)
        except ForgeError as exc:
            raise HeadMovedError(
                f"{exc} — the branch on GitHub is no longer at {proposal.head_sha[:12]}; nothing was merged"
            ) from exc
        await proposals.update(self._db, proposal.id, head_sha=head_sha, now=self._now())

    async def _fetch_merged(self, proposal_id: int, merged_sha: str) -> None:
        """Bring GitHub's merge commit into the bot's repository and keep it at the merged ref."""
        await self.main_sha()
        if await resolve_commit(self.repo_root, merged_sha) is None:
            raise ForgeError(
                f"GitHub merged as {merged_sha[:12]}, but fetching {self.base} did not bring that commit"
            )
        await self._keep_merged(proposal_id, merged_sha)

    async def _keep_merged(self, proposal_id: int, merged_sha: str) -> None:
        await run_git(
            self.repo_root,
            "update-ref",
            "-m",
            f"mendbot: merge proposal {proposal_id}",
            merged_ref(proposal_id),
            merged_sha,
        )

    async def _merged_already(self, proposal: Proposal, number: int, expected_head_sha: str) -> MergeResult:
        """The result of an earlier merge of the approved head (this process, or on the website)."""
        merged = await resolve_commit(self.repo_root, merged_ref(proposal.id))
        if merged is None:
            # githubkit's PullRequest no longer carries merge_commit_sha: find the merge on main.
            upstream = await self.main_sha()
            merged = await self._merge_commit_of(expected_head_sha, upstream)
            if merged is None:
                raise ForgeError(
                    f"pull request #{number} was merged, but {self.base} on GitHub has no merge commit of"
                    f" the approved head {expected_head_sha[:12]} (merged at another head, or squashed)"
                )
            await self._keep_merged(proposal.id, merged)
        parents = (await run_git(self.repo_root, "rev-list", "--parents", "-n", "1", merged)).split()
        if expected_head_sha not in parents[2:]:
            raise ForgeError(
                f"proposal {proposal.id} was already merged as {merged[:12]}, which does not merge the"
                f" approved head {expected_head_sha[:12]}"
            )
        return MergeResult(merged_sha=merged, main_before=parents[1], already_merged=True)

    async def _merge_commit_of(self, head_sha: str, upstream: str) -> str | None:
        """The commit on `upstream`'s first-parent line that merged `head_sha`, if any."""
        if await resolve_commit(self.repo_root, head_sha) is None:
            return None
        lines = await run_git(
            self.repo_root, "rev-list", "--first-parent", "--parents", upstream, f"^{head_sha}"
        )
        for line in lines.splitlines():
            commit, *parents = line.split()
            if head_sha in parents[1:]:
                return commit
        return None

    # -- pushing

    def push_command(
        self, branch: str, head_sha: str, *, lease: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """(argv, git config of this one process) of the push: exactly the verified commit, to its branch.

        With `lease` (the sha the branch must still have on the remote) the push may replace a
        rebased branch, `--force-with-lease=<ref>:<lease>`, and fails if anyone else pushed.
        For http(s) remotes the token travels in that config, i.e. in the environment of the one git
        process (see the module docstring); other remotes (a path, file://, ssh) use no token.
        """
        ref = f"refs/heads/{branch}"
        argv = ["git", "push", "--porcelain"]
        if lease is not None:
            argv.append(f"--force-with-lease={ref}:{lease}")
        argv += [self.remote_url, f"{head_sha}:{ref}"]
        return argv, self._auth_config()

    async def push(self, branch: str, head_sha: str, *, lease: str | None = None) -> None:
        argv, config = self.push_command(branch, head_sha, lease=lease)
        await run_git(
            self.repo_root,
            *argv[1:],
            config=config,
            timeout_s=self._push_timeout_s,
            secrets=(self._token, self._basic_credentials()),
        )
        log.info("branch_pushed", forge=self.name, branch=branch, head_sha=head_sha, replaced=lease)

    def _auth_config(self) -> dict[str, str]:
        """The git config that hands git the token for this remote's origin, if it is http(s)."""
        parts = urlsplit(self.remote_url)
        if parts.scheme not in ("http", "https"):
            return {}
        origin = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return {f"http.{origin}/.extraHeader": f"Authorization: Basic {self._basic_credentials()}"}

    def _basic_credentials(self) -> str:
        # GitHub's git endpoint takes any token as the password of the user "x-access-token".
        return base64.b64encode(f"x-access-token:{self._token}".encode()).decode()

    # -- helpers

    def _client(self) -> GitHub[Any]:
        from githubkit import GitHub

        # No HTTP cache (a refreshed state must be fresh) and no automatic retry (a retried POST
        # could open a second pull request or post a comment twice).
        return GitHub(
            self._token,
            base_url=self.api_url,
            user_agent="mendbot",
            http_cache=False,
            auto_retry=False,
            timeout=30.0,
        )

    async def _stored(self, proposal_id: int) -> Proposal:
        proposal = await proposals.get(self._db, proposal_id)
        if proposal is None:
            raise ForgeError(f"there is no proposal {proposal_id}")
        return proposal

    async def _number(self, proposal_id: int) -> int:
        proposal = await self._stored(proposal_id)
        if proposal.forge != self.name or proposal.number is None:
            raise ForgeError(f"proposal {proposal_id} lives on the {proposal.forge} forge, not {self.name}")
        return proposal.number

    def _now(self) -> float:
        return self._clock().timestamp()


def _forge_error(action: str, exc: Exception) -> ForgeError:
    """GitHub's own words for what went wrong (message plus each validation error), as a ForgeError."""
    from githubkit.exception import RequestFailed, RequestTimeout

    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        try:
            payload = exc.response.json()
        except ValueError:
            payload = None
        detail = _github_message(payload) or exc.response.text[:300] or exc.response.reason_phrase
        return ForgeError(f"GitHub refused {action} ({status}): {detail}", status=status)
    if isinstance(exc, RequestTimeout):
        return ForgeError(f"GitHub did not answer in time while {action}")
    if isinstance(exc, ValueError):  # pydantic's ValidationError: an answer we cannot read
        return ForgeError(f"GitHub's answer to {action} was not what the API promises: {exc}")
    return ForgeError(f"GitHub could not be reached while {action}: {exc!r}")


def _github_message(payload: object) -> str:
    if not isinstance(payload, dict):
        return ""
    message = str(payload.get("message") or "")
    details = []
    for error in payload.get("errors") or []:
        if isinstance(error, dict):
            details.append(
                str(
                    error.get("message") or " ".join(str(error.get(k, "")) for k in ("field", "code")).strip()
                )
            )
        else:
            details.append(str(error))
    return ": ".join(filter(None, [message, "; ".join(filter(None, details))]))
