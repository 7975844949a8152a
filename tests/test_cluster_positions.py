"""Which process runs which commit (bot/scale/cluster.py): stored by each process sharing the
database when it starts and whenever it moves to a merge, and shown by /run (and /metrics)."""

from __future__ import annotations

from pathlib import Path

from tests.test_cluster import _git, _process, _repo, _until


async def test_each_process_s_commit_is_known_to_every_process_and_follows_a_merge(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two processes on their own checkouts of one repository: both at the first commit when they start;
    after a merge went live on one, the other is shown behind until it follows, then both at it."""
    repo = tmp_path / "repo"
    first, second = _repo(repo)
    _git(repo, "reset", "-q", "--hard", first)
    behind = tmp_path / "behind"
    _git(tmp_path, "clone", "-q", str(repo), str(behind))
    (behind / "cogs" / "x.py").write_text("X = 'edited by hand'\n")  # so it cannot follow
    async with (
        _process(tmp_path, postgres_url, "a", repo_dir=repo) as a,
        _process(tmp_path, postgres_url, "b", repo_dir=behind) as b,
    ):
        assert await a.cluster.positions() == {"shards 0": first, "shards 1": first}
        assert a.health()["commit"] == first
        _git(repo, "reset", "-q", "--hard", second)  # the merge went live on a
        assert a.deploy.went_live is not None
        await a.deploy.went_live(second, True)
        await _until(lambda: b.cluster.follow_problem is not None)
        assert await b.cluster.positions() == {"shards 0": second, "shards 1": first}
        shown = await b.cluster.live_on(second)
        assert shown == f"**Live on:** shards 0 ✅ `{second[:7]}`, shards 1 at `{first[:7]}`"
        _git(behind, "checkout", "-q", "--", ".")  # the hand edit undone
        assert await b.cluster.follow(second) is True
        assert await a.cluster.positions() == {"shards 0": second, "shards 1": second}
