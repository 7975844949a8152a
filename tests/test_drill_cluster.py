"""A fire drill on a shared PostgreSQL database (bot/scale/cluster.py): started on a follower, its
failing calls reach the leader through the database, the leader opens and announces the incident once,
and the follower's drill times detection and the announcement from there."""

from __future__ import annotations

from pathlib import Path

from mendbot.kernel.drills import DRILL_KIND
from tests.test_cluster import _announced, _leader_of, _process


async def test_a_drill_started_on_a_follower_is_detected_and_announced_by_the_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """/drill on a process that does not lead: one announcement (the leader's), both stages timed,
    then the stop for want of a model key."""
    async with (
        _process(tmp_path, postgres_url, "a") as a,
        _process(tmp_path, postgres_url, "b") as b,
    ):
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        follower.drill.poll_s = 0.05
        assert await follower.drill.start() == 1
        report = await follower.drill.wait()
        announced = _announced(a, b)
    assert report is not None
    assert report.stopped and report.missed is None, report.render()
    assert [s.stage for s in report.stages if s.took_s is not None] == ["detect", "announce"]
    assert [kind for _, kind in announced] == [DRILL_KIND]
