"""The merge queue: approved proposals merge one at a time, in approval order.

**Order** (`MergeQueue`). Approvals can arrive together — several runs work in parallel, each on the
files it claimed (`mendbot.improve.agent.claims`). Each approved run takes its place at the tail; its merge
starts only when every run approved before it has been merged, sent back or failed. The merge itself is
`DeployService`'s: if main moved, the branch is rebased onto the new main and re-verified before it
merges (`Merger.rebase_and_reverify`), so the second of two disjoint proposals is checked on top of the
first. A run that has to wait is told who is ahead of it.

Import-only conflicts met on the way are resolved by `mendbot.deploy.import_conflicts`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mendbot.kernel.log import get_logger

__all__ = ["MergeQueue"]

_log = get_logger(__name__)


class MergeQueue:
    """First come, first merged: `submit` runs each job after every job submitted before it has ended."""

    def __init__(self) -> None:
        self._tail: asyncio.Future[None] | None = None
        self._order: list[int] = []  # run ids waiting or merging, in approval order

    @property
    def pending(self) -> list[int]:
        """Run ids in the queue, the one merging first."""
        return list(self._order)

    async def submit(
        self,
        run_id: int,
        job: Callable[[], Awaitable[str]],
        *,
        on_queued: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> str:
        """Run `job` once the runs ahead are done; `on_queued(ahead)` first, if any are."""
        previous = self._tail
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail = done
        ahead = list(self._order)
        self._order.append(run_id)
        try:
            if previous is not None and not previous.done():
                if on_queued is not None and ahead:
                    await on_queued(ahead)
                await asyncio.wait([previous])  # its outcome is its own: only its end matters here
            _log.info("merge_queue_turn", run_id=run_id, behind=len(self._order) - 1)
            return await job()
        finally:
            with contextlib.suppress(ValueError):
                self._order.remove(run_id)
            done.set_result(None)
            if self._tail is done:
                self._tail = None
