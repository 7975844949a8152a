"""A loopback double of the GitHub endpoints GitHubForge uses: REST under a GHE-style prefix, and git.

    async with GitHubDouble(bare_repo, token="ghs_test") as github:
        forge = GitHubForge(repo, db, repository=github.repository, token="ghs_test",
                            api_url=github.api_url, remote_url=github.git_url)
        ...
        assert github.pulls[1]["head"]["sha"] == sha

REST (at ``api_url`` = ``<base>/api/v3``, as on GitHub Enterprise): ``GET /repos/{o}/{r}``,
``POST /repos/{o}/{r}/pulls``, ``GET`` and ``PATCH /repos/{o}/{r}/pulls/{n}``, ``PUT
/repos/{o}/{r}/pulls/{n}/merge``, ``POST /repos/{o}/{r}/issues/{n}/comments``. Responses carry
every field githubkit's pydantic models require (built from GitHub's documented examples), so
parsing them is part of what a test proves. Creating a pull request checks, like GitHub, that
``head`` and ``base`` are branches of the bare repository: a test passes only if the branch was
pushed first. Merging works on the bare repository like GitHub's "Create a merge commit": 409 if
the ``sha`` given is not the head branch's current commit, 405 if the pull request is not open or
its branches conflict, otherwise a real merge commit (first parent the base, second the head)
becomes the base branch's head and the answer is ``{"sha", "merged", "message"}``.

Git (at ``git_url``): the smart-HTTP protocol served by ``git http-backend`` over the bare
repository, accepting only ``Authorization: Basic`` with the token as password, so a push over
http proves the token mechanism works. Every request, REST or git, is recorded with its headers.
``fail_next(status, payload)`` makes the next REST request fail the way GitHub does;
``set_merged(n)`` / ``set_closed(n)`` change a pull request as if someone did it on the website.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = [
    "GitHubDouble",
    "RecordedRequest",
    "full_repository",
    "issue_comment",
    "pull_request",
    "simple_user",
]

API_PREFIX = "/api/v3"
_DOCS = "https://docs.github.com/rest"
_TIME = "2026-01-02T03:04:05Z"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the API prefix for REST; the full path for git
    headers: dict[str, str]
    json: Any
    kind: str  # "rest" or "git"


# --------------------------------------------------------------------------- payloads


def simple_user(login: str, user_id: int, *, web: str = "https://github.com") -> dict[str, Any]:
    """A SimpleUser as GitHub returns it."""
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{web}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "User",
        "site_admin": False,
    }


def full_repository(owner: str, name: str, *, default_branch: str = "main") -> dict[str, Any]:
    """A FullRepository (also a valid Repository) as GitHub returns it."""
    api = f"https://api.github.com/repos/{owner}/{name}"
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": f"{owner}/{name}",
        "owner": simple_user(owner, 1),
        "private": False,
        "html_url": f"https://github.com/{owner}/{name}",
        "description": "A Discord bot that mends itself",
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"git:github.com/{owner}/{name}.git",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"git@github.com:{owner}/{name}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"https://github.com/{owner}/{name}.git",
        "mirror_url": None,
        "hooks_url": f"{api}/hooks",
        "svn_url": f"https://svn.github.com/{owner}/{name}",
        "homepage": None,
        "language": "Python",
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 3,
        "watchers_count": 3,
        "watchers": 3,
        "size": 108,
        "default_branch": default_branch,
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "public",
        "pushed_at": _TIME,
        "created_at": _TIME,
        "updated_at": _TIME,
        "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        "allow_rebase_merge": True,
        "allow_squash_merge": True,
        "allow_merge_commit": True,
        "subscribers_count": 1,
        "network_count": 0,
        "license": {
            "key": "mit",
            "name": "MIT License",
            "url": "https://api.github.com/licenses/mit",
            "spdx_id": "MIT",
            "node_id": "MDc6TGljZW5zZW1pdA==",
        },
    }


def pull_request(
    owner: str,
    name: str,
    number: int,
    *,
    head: str,
    head_sha: str,
    base: str,
    base_sha: str,
    title: str,
    body: str | None,
    state: str = "open",
    merged: bool = False,
    author: str = "mendbot",
) -> dict[str, Any]:
    """A PullRequest as GitHub returns it from create/get/update."""
    api = f"https://api.github.com/repos/{owner}/{name}"
    web_url = f"https://github.com/{owner}/{name}/pull/{number}"
    repo = full_repository(owner, name, default_branch=base)
    user = simple_user(author, 41898282)
    return {
        "url": f"{api}/pulls/{number}",
        "id": 1000 + number,
        "node_id": f"MDExOlB1bGxSZXF1ZXN0{number}",
        "html_url": web_url,
        "diff_url": f"{web_url}.diff",
        "patch_url": f"{web_url}.patch",
        "issue_url": f"{api}/issues/{number}",
        "commits_url": f"{api}/pulls/{number}/commits",
        "review_comments_url": f"{api}/pulls/{number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{number}/comments",
        "statuses_url": f"{api}/statuses/{head_sha}",
        "number": number,
        "state": state,
        "locked": False,
        "title": title,
        "user": user,
        "body": body,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": _TIME,
        "updated_at": _TIME,
        "closed_at": _TIME if state == "closed" else None,
        "merged_at": _TIME if merged else None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": {
            "label": f"{owner}:{head}",
            "ref": head,
            "sha": head_sha,
            "user": repo["owner"],
            "repo": repo,
        },
        "base": {
            "label": f"{owner}:{base}",
            "ref": base,
            "sha": base_sha,
            "user": repo["owner"],
            "repo": repo,
        },
        "_links": {
            "self": {"href": f"{api}/pulls/{number}"},
            "html": {"href": web_url},
            "issue": {"href": f"{api}/issues/{number}"},
            "comments": {"href": f"{api}/issues/{number}/comments"},
            "review_comments": {"href": f"{api}/pulls/{number}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/pulls/{number}/commits"},
            "statuses": {"href": f"{api}/statuses/{head_sha}"},
        },
        "author_association": "CONTRIBUTOR",
        "auto_merge": None,
        "draft": False,
        "merged": merged,
        "mergeable": None if merged else True,
        "rebaseable": None if merged else True,
        "mergeable_state": "clean",
        "merged_by": user if merged else None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 1,
        "deletions": 1,
        "changed_files": 1,
    }


def issue_comment(owner: str, name: str, number: int, comment_id: int, body: str) -> dict[str, Any]:
    """An IssueComment as GitHub returns it."""
    api = f"https://api.github.com/repos/{owner}/{name}"
    return {
        "id": comment_id,
        "node_id": f"MDEyOklzc3VlQ29tbWVudD{comment_id}",
        "url": f"{api}/issues/comments/{comment_id}",
        "html_url": f"https://github.com/{owner}/{name}/pull/{number}#issuecomment-{comment_id}",
        "body": body,
        "user": simple_user("mendbot", 41898282),
        "created_at": _TIME,
        "updated_at": _TIME,
        "issue_url": f"{api}/issues/{number}",
        "author_association": "CONTRIBUTOR",
    }


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": _DOCS, "status": str(status), **extra}, status=status
    )


# --------------------------------------------------------------------------- server


@dataclass
class GitHubDouble:
    """GitHub's REST and git endpoints for one repository, backed by `bare_repo` (module docstring)."""

    bare_repo: Path
    token: str = "ghs_double_token"
    owner: str = "octo"
    name: str = "mendbot"
    requests: list[RecordedRequest] = field(default_factory=list)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _port: int | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GitHubDouble:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- addresses

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("GitHubDouble is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The REST root, GitHub Enterprise style (a path prefix githubkit must keep)."""
        return self.base_url + API_PREFIX

    @property
    def git_url(self) -> str:
        return f"{self.base_url}/git/{self.owner}/{self.name}.git"

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- test controls

    def fail_next(self, status: int, payload: dict[str, Any]) -> None:
        """The next REST request gets this status and JSON body instead of its normal answer."""
        self._failures.append((status, payload))

    def set_merged(self, number: int) -> None:
        self.pulls[number].update(state="closed", merged=True, merged_at=_TIME, closed_at=_TIME)

    def set_closed(self, number: int) -> None:
        self.pulls[number].update(state="closed", closed_at=_TIME)

    def rest_requests(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.kind == "rest"
            and (method is None or r.method == method)
            and (path is None or r.path == path)
        ]

    @property
    def git_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == "git"]

    # -- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/git/"):
            return await self._git(request)
        body = await request.read()
        payload: Any = None
        if body:
            try:
                payload = await request.json()
            except ValueError:
                payload = body.decode(errors="replace")
        path = request.path.removeprefix(API_PREFIX)
        self.requests.append(RecordedRequest(request.method, path, dict(request.headers), payload, "rest"))
        if not request.path.startswith(API_PREFIX + "/"):
            return _error(404, "Not Found")
        if request.headers.get("Authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            return _error(401, "Bad credentials")
        if self._failures:
            status, failure = self._failures.pop(0)
            return web.json_response(failure, status=status)
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "repos" or (parts[1], parts[2]) != (self.owner, self.name):
            return _error(404, "Not Found")
        route = (request.method, *parts[3:])
        match route:
            case ("GET",):
                return web.json_response(full_repository(self.owner, self.name))
            case ("POST", "pulls"):
                return await self._create_pull(payload)
            case ("GET", "pulls", number) if number.isdigit() and int(number) in self.pulls:
                return web.json_response(await self._refreshed_pull(int(number)))
            case ("PATCH", "pulls", number) if number.isdigit() and int(number) in self.pulls:
                return self._update_pull(int(number), payload)
            case ("PUT", "pulls", number, "merge") if number.isdigit() and int(number) in self.pulls:
                return await self._merge_pull(int(number), payload)
            case ("POST", "issues", number, "comments") if number.isdigit() and int(number) in self.pulls:
                return self._comment(int(number), payload)
        return _error(404, "Not Found")

    async def _create_pull(self, payload: Any) -> web.Response:
        if not isinstance(payload, dict) or not payload.get("head") or not payload.get("base"):
            return _error(422, "Invalid request.")
        head = str(payload["head"]).split(":", 1)[-1]
        base = str(payload["base"])
        head_sha = await self._branch_sha(head)
        base_sha = await self._branch_sha(base)
        invalid = [f for f, sha in (("head", head_sha), ("base", base_sha)) if sha is None]
        if invalid:
            return _error(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "field": f, "code": "invalid"} for f in invalid],
            )
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in self.pulls.values()):
            message = f"A pull request already exists for {self.owner}:{head}."
            return _error(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "code": "custom", "message": message}],
            )
        assert head_sha is not None and base_sha is not None
        number = next(self._numbers)
        self.pulls[number] = pull_request(
            self.owner,
            self.name,
            number,
            head=head,
            head_sha=head_sha,
            base=base,
            base_sha=base_sha,
            title=str(payload.get("title") or ""),
            body=payload.get("body"),
        )
        return web.json_response(self.pulls[number], status=201)

    async def _refreshed_pull(self, number: int) -> dict[str, Any]:
        """The pull request with its head sha read from the bare repository, as a push updates it."""
        pull = self.pulls[number]
        if pull["state"] == "open":
            head_sha = await self._branch_sha(pull["head"]["ref"])
            if head_sha is not None:
                pull["head"]["sha"] = head_sha
        return pull

    def _update_pull(self, number: int, payload: Any) -> web.Response:
        pull = self.pulls[number]
        if isinstance(payload, dict):
            for key in ("title", "body"):
                if key in payload:
                    pull[key] = payload[key]
            if payload.get("state") in ("open", "closed") and not pull["merged"]:
                pull["state"] = payload["state"]
                pull["closed_at"] = _TIME if payload["state"] == "closed" else None
        return web.json_response(pull)

    async def _merge_pull(self, number: int, payload: Any) -> web.Response:
        pull = self.pulls[number]
        payload = payload if isinstance(payload, dict) else {}
        method = payload.get("merge_method", "merge")
        if method != "merge":
            return _error(422, f"the double only creates merge commits, not {method!r}")
        if pull["state"] != "open" or pull["merged"]:
            return _error(405, "Pull Request is not mergeable")
        head, base = pull["head"]["ref"], pull["base"]["ref"]
        head_sha = await self._branch_sha(head)
        base_sha = await self._branch_sha(base)
        if head_sha is None or base_sha is None:
            return _error(405, "Pull Request is not mergeable")
        if "sha" in payload and payload["sha"] != head_sha:
            return _error(409, "Head branch was modified. Review and try the merge again.")
        code, tree = await self._bare_git("merge-tree", "--write-tree", base_sha, head_sha)
        if code != 0:
            return _error(405, "Pull Request is not mergeable")
        title = payload.get("commit_title") or f"Merge pull request #{number} from {self.owner}/{head}"
        message = payload.get("commit_message") or pull["title"]
        identity = {
            "GIT_AUTHOR_NAME": "GitHub",
            "GIT_AUTHOR_EMAIL": "noreply@github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        code, merge_sha = await self._bare_git(
            "commit-tree",
            tree.splitlines()[0],
            "-p",
            base_sha,
            "-p",
            head_sha,
            "-m",
            f"{title}\n\n{message}",
            env=identity,
        )
        if code != 0:
            return _error(500, "could not create the merge commit")
        code, _ = await self._bare_git("update-ref", f"refs/heads/{base}", merge_sha, base_sha)
        if code != 0:  # the base moved meanwhile
            return _error(405, "Base branch was modified. Review and try the merge again.")
        pull.update(
            state="closed",
            merged=True,
            merged_at=_TIME,
            closed_at=_TIME,
            merge_commit_sha=merge_sha,
            merged_by=simple_user("octocat", 1),
            mergeable=None,
            rebaseable=None,
        )
        pull["head"]["sha"] = head_sha
        return web.json_response(
            {"sha": merge_sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    def _comment(self, number: int, payload: Any) -> web.Response:
        if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
            return _error(422, "Invalid request.")
        comment = issue_comment(self.owner, self.name, number, 5000 + len(self.comments), payload["body"])
        self.comments.append({"number": number, **comment})
        self.pulls[number]["comments"] += 1
        return web.json_response(comment, status=201)

    async def _branch_sha(self, branch: str) -> str | None:
        code, sha = await self._bare_git(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"
        )
        return sha if code == 0 else None

    async def _bare_git(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """(exit code, stripped stdout) of git run in the bare repository."""
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=self.bare_repo,
            env={**os.environ, **env} if env else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        stdout, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, stdout.decode().strip()

    # -- git smart HTTP

    async def _git(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), None, "git")
        )
        prefix = f"/git/{self.owner}/{self.name}.git/"
        if not request.path.startswith(prefix):
            return web.Response(status=404, text="Repository not found.")
        if not self._git_authorized(request.headers.get("Authorization", "")):
            return web.Response(
                status=401, text="Authentication failed", headers={"WWW-Authenticate": 'Basic realm="GitHub"'}
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.bare_repo.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{self.bare_repo.name}/{request.path.removeprefix(prefix)}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",  # an authenticated user may push (receive-pack)
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate(body)
        head, _, content = stdout.partition(b"\r\n\r\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        if process.returncode != 0 and not stdout:
            return web.Response(status=500, text=stderr.decode(errors="replace"))
        return web.Response(status=status, body=content, headers=headers)

    def _git_authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return password == self.token
