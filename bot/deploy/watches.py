"""The watch after a deploy: quiet for `deploy.watch_window_s` → resolved (incident closed, lesson
written); the failure back, a new failure in the touched code, or a replay against the live code that
still fails → regressed, with a rollback offered.

Watches outlive a restart: `resume_watches()` picks them up from the runs' events and
`announce_resumed_watches()` starts their timers once chat is up, running a live replay that a stop
kept from running and posting, once, the "🚀 Merged … deployed" report a stop kept from being said.
(Not to be confused with `mendbot.deploy.watcher`, which watches the live checkout for hand edits.)
"""

from __future__ import annotations

import asyncio
import contextlib

from mendbot.db.records import ActionRecord
from mendbot.deploy.deploy_core import DeployCore, _Watch
from mendbot.improve.memory import Lesson
from mendbot.improve.proof.verdict import LiveReplay
from mendbot.improve.runs import Run
from mendbot.kernel.durations import human_duration
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger

__all__ = ["DeployWatches"]

_log = get_logger(__name__)


class DeployWatches(DeployCore):
    """Watching deployed runs until they resolve or regress."""

    async def _start_watch(
        self,
        run: Run,
        files: set[str],
        remaining_s: float | None = None,
        *,
        timer: bool = True,
        resumed: bool = False,
        process: str | None = None,
    ) -> _Watch:
        """Watch the run's fingerprint and touched files; `timer=False` leaves the window's timer
        to `_start_timer` (a resumed watch, whose end must not be reported before chat is up).
        `process`: a canary's watch, which only that process's records can end."""
        if run.state != "watching":
            detail: dict[str, object] = {"window_s": self._config.watch_window_s}
            if resumed:
                detail["resumed"] = True  # not the deploy's own start of the watch (see `_unreported`)
            run = await self.runs.transition(run.id, "watching", actor="pipeline", detail=detail)
        incident = await self._incident(run.incident_id)
        fingerprint = incident.fingerprint if incident is not None else None
        if incident is not None and self.fixed is not None and not resumed:
            self.fixed(incident.kind, fingerprint)  # from here on, only what happens after the fix counts
        watch = self._watches[run.id] = _Watch(run.id, fingerprint, files, process=process)
        if timer:
            self._start_timer(watch, self._config.watch_window_s if remaining_s is None else remaining_s)
        return watch

    @property
    def watching(self) -> list[int]:
        """The runs whose deploy is being watched now."""
        return sorted(self._watches)

    def _start_timer(self, watch: _Watch, window: float) -> None:
        watch.task = asyncio.get_running_loop().create_task(
            self._watch_until(watch, window), name=f"watch-{watch.run_id}"
        )

    async def _watch_until(self, watch: _Watch, window: float) -> None:
        await asyncio.sleep(window)
        if self._watches.get(watch.run_id) is not watch:
            return  # regressed meanwhile
        rolled_out = ""
        if watch.process is not None and self.rollout is not None:
            # Quiet is not enough on a canary: its error rate and latency against its own baseline.
            why = await self.rollout.judge(watch.run_id)
            if self._watches.get(watch.run_id) is not watch:
                return  # a failure came back while the records were read
            if why is not None:
                self._watches.pop(watch.run_id, None)
                await self._regressed_canary(watch, why)
                return
            self._watches.pop(watch.run_id, None)
            rolled_out = "\n" + await self.rollout.passed(await self.runs.get(watch.run_id))
        self._watches.pop(watch.run_id, None)
        run = await self.runs.transition(watch.run_id, "resolved", actor="watch")
        if run.incident_id is not None:
            with contextlib.suppress(UserError):  # already resolved by hand
                await self._incidents.set_state(run.incident_id, "resolved", 0)
        await self._remember(watch, run, "resolved")
        if self.reporter is not None:
            where = f" on the canary ({watch.process})" if watch.process is not None else ""
            await self.reporter.deployed(
                run,
                f"✅ Run #{run.id}: quiet for {human_duration(self._config.watch_window_s)} after deploy"
                f"{where} — resolved.{rolled_out}",
            )

    async def _remember(self, watch: _Watch, run: Run, outcome: str) -> None:
        """The lesson a watch leaves for later runs on the same fingerprint."""
        await self._memory.write(
            Lesson(
                run_id=run.id,
                fingerprint=watch.fingerprint,
                files=sorted(watch.files),
                root_cause=run.description,
                fix_commit=run.verified_sha,
                outcome=outcome,
                created_at=self._clock().timestamp(),
            )
        )

    def observe(self, record: ActionRecord) -> None:
        """Recorder subscriber: a watched failure coming back, or a new one in the touched code."""
        if record.ok or not self._watches:
            return
        for watch in list(self._watches.values()):
            if watch.process is not None and record.process != watch.process:
                continue  # a canary's watch: the others do not run the fix
            touched = any(frame.split(":", 1)[0] in watch.files for frame in record.frames)
            # A run without an incident watches no fingerprint: a failure without one (what Discord
            # or the model API refused) is not the watched failure coming back.
            returned = watch.fingerprint is not None and record.fingerprint == watch.fingerprint
            if returned or touched:
                self._watches.pop(watch.run_id, None)
                if watch.task is not None:
                    watch.task.cancel()
                asyncio.get_running_loop().create_task(self._regressed(watch, record))

    async def _regressed(self, watch: _Watch, record: ActionRecord) -> None:
        run = await self.runs.transition(
            watch.run_id,
            "regressed",
            actor="watch",
            detail={"error": f"{record.error_type}: {record.error_message}", "frames": record.frames[-3:]},
        )
        await self._remember(watch, run, "regressed")
        error = f"`{record.error_type}: {(record.error_message or '')[:200]}`"
        undone = await self._undo_canary(watch, run, f"{record.error_type}: {record.error_message or ''}")
        if self.reporter is not None:
            where = record.frames[-1] if record.frames else record.kind
            await self.reporter.regressed(
                run, f"⚠️ Run #{run.id} regressed{self._on(watch)}: {error} at `{where}`. {undone}"
            )

    async def _regressed_live(self, watch: _Watch, line: str) -> None:
        """The replay against the live code still fails: regressed at once — the incident open again
        and the rollback offered — instead of a watch that could end "resolved"."""
        self._watches.pop(watch.run_id, None)
        if watch.task is not None:
            watch.task.cancel()
        run = await self.runs.transition(
            watch.run_id, "regressed", actor="watch", detail={"live_replay": line.strip()[:500]}
        )
        if run.incident_id is not None:
            with contextlib.suppress(UserError):  # open already
                await self._incidents.set_state(run.incident_id, "open", 0)
        await self._remember(watch, run, "regressed")
        why = line.strip().removeprefix("❌ Replay against the live code: ")[:300]
        undone = await self._undo_canary(watch, run, f"the replay against the live code still fails ({why})")
        if self.reporter is not None:
            await self.reporter.regressed(
                run,
                f"⚠️ Run #{run.id} regressed{self._on(watch)}: the replay against the live code still fails "
                f"({why}). {undone}",
            )

    async def _regressed_canary(self, watch: _Watch, why: str) -> None:
        """The canary's own records after the fix are worse than before it: regressed, rolled back."""
        run = await self.runs.transition(watch.run_id, "regressed", actor="watch", detail={"canary": why})
        if run.incident_id is not None:
            with contextlib.suppress(UserError):  # open already
                await self._incidents.set_state(run.incident_id, "open", 0)
        await self._remember(watch, run, "regressed")
        undone = await self._undo_canary(watch, run, why)
        if self.reporter is not None:
            await self.reporter.regressed(run, f"⚠️ Run #{run.id} regressed{self._on(watch)}: {why}. {undone}")

    async def _undo_canary(self, watch: _Watch, run: Run, why: str) -> str:
        """A canary's regression takes the canary back at once (the rollout's line for chat); any
        other offers the rollback."""
        if watch.process is None or self.rollout is None:
            return f"`/rollback {run.id}` to undo it."
        try:
            return await self.rollout.regressed(run, why)
        except Exception as exc:  # stored as rolled_back already: a next leader finishes it
            _log.exception("taking the canary back failed", run_id=run.id)
            return (
                f"Taking the canary back failed ({type(exc).__name__}); `/run {run.id}` shows which"
                " process runs which commit."
            )

    @staticmethod
    def _on(watch: _Watch) -> str:
        return f" on the canary ({watch.process})" if watch.process is not None else ""

    async def resume_watches(self) -> int:
        """After a restart: watch deployed runs again at once (a regression is caught from the start),
        for the time their window has left — timed from `announce_resumed_watches()`, once chat is
        up, so that a window which ran out while the bot was down is still reported."""
        resumed = 0
        for run in await self.runs.active():
            if run.state not in ("deployed", "watching"):
                continue
            events = await self.runs.events(run.id)
            started = next(
                (e.ts for e in reversed(events) if e.state in ("watching", "deployed")), run.updated_at
            )
            remaining = max(0.0, started + self._config.watch_window_s - self._clock().timestamp())
            files = set(
                next((e.detail.get("files", []) for e in reversed(events) if e.state == "deployed"), [])
            )
            process = await self.rollout.canary_of(run.id) if self.rollout is not None else None
            watch = await self._start_watch(run, files, remaining, timer=False, resumed=True, process=process)
            self._resumed_watches.append((watch, remaining))
            resumed += 1
        return resumed

    async def announce_resumed_watches(self, why: str = "back after a restart") -> None:
        """Once connected: say in each run's channel that its watch goes on (and `why`), and start
        its timer."""
        resumed, self._resumed_watches = self._resumed_watches, []
        for watch, remaining in resumed:
            if self._watches.get(watch.run_id) is not watch:
                continue  # regressed (or stopped) before chat was up: already reported
            run = await self.runs.get(watch.run_id)
            replay = LiveReplay()
            if self.prove_live is not None and (merged := await self._unreplayed(run)) is not None:
                # The process stopped between the deploy and its replay (a restart it asked for, a
                # crash in the reload): the replay runs now, and may regress the run like any other.
                replay = await self.replay_live(run, merged)
            if (unreported := await self._unreported(run)) is not None:
                # The deploy's own report was never posted (the stop came during the reload or the
                # replay): it is posted now, once, with the replay's line.
                await self._notify(
                    run,
                    f"🚀 Merged `{unreported[:7]}` and deployed (finished after a restart):\n"
                    f"(already live: loaded when this process started){replay.line}",
                )
                await self.deploy_reported(run.id, unreported)
            elif replay.line and not replay.failed:
                await self._notify(run, f"Run #{run.id}: {replay.line.strip()}")
            if replay.failed:
                await self._regressed_live(watch, replay.line)
                continue
            if remaining > 0:
                await self._notify(
                    run, f"👀 Run #{run.id}: {why}, still watching for {human_duration(remaining)} more."
                )
            self._start_timer(watch, remaining)

    async def _unreplayed(self, run: Run) -> str | None:
        """The merged commit of a deployed run whose replay against it never ran, else None."""
        events = await self.runs.events(run.id)
        deployed = next(
            (e for e in reversed(events) if e.event == "transition" and e.state == "deployed"), None
        )
        if deployed is None:
            return None
        if any(e.event == "proof_live" and e.id > deployed.id for e in events):
            return None
        merged = deployed.detail.get("merged_sha")
        return str(merged) if merged else None

    async def deploy_reported(self, run_id: int, merged_sha: str) -> None:
        """Note that the "🚀 Merged … deployed" report of this deploy is said (it is said once)."""
        await self.runs.event(run_id, "deploy_reported", actor="pipeline", detail={"merged_sha": merged_sha})

    async def _unreported(self, run: Run) -> str | None:
        """The merged commit of a deployed run whose "🚀 Merged … deployed" report was never said,
        else None. Said: a `deploy_reported` event since the deploy, or (runs deployed before that
        event existed) the watch the deploy itself started."""
        events = await self.runs.events(run.id)
        deployed = next(
            (e for e in reversed(events) if e.event == "transition" and e.state == "deployed"), None
        )
        if deployed is None:
            return None
        for event in events:
            if event.id <= deployed.id:
                continue
            if event.event == "deploy_reported":
                return None
            if event.event == "transition" and event.state == "watching" and not event.detail.get("resumed"):
                return None
        merged = deployed.detail.get("merged_sha")
        return str(merged) if merged else None

    def stop(self) -> None:
        """Cancel watch timers (a restart resumes them from the runs' events)."""
        for watch in self._watches.values():
            if watch.task is not None:
                watch.task.cancel()
        self._watches.clear()

    async def _fingerprint(self, incident_id: int | None) -> str | None:
        incident = await self._incident(incident_id)
        return incident.fingerprint if incident is not None else None
