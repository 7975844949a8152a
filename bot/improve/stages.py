"""The stages of a run, a layer of SelfImprovementAgent (`mendbot.improve.service`): a run's task from start
to end — observe (the evidence), investigate, plan and claim the files, edit, then verify-and-propose
(`mendbot.improve.propose`) for a fix or the report for an investigation — a rollback run's revert, and what
a run leaves behind when it ends, however it ends: its proposal closed, its worktree and claim released.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from mendbot.forge.base import ForgeError
from mendbot.improve.agent.claims import LIVE_STATES, plan_files
from mendbot.improve.agent.workspace import Worktree, branch_name
from mendbot.improve.memory import Lesson
from mendbot.improve.progress import _Live, _StageFailure
from mendbot.improve.propose import RunProposals
from mendbot.improve.runs import Run, state_name
from mendbot.kernel.log import bind_context, get_logger
from mendbot.kernel.uncommitted import not_on_main, unseen_line

__all__ = ["RunStages", "parse_json_block"]

_log = get_logger(__name__)
_JSON_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.S)

STAGES = ("observing", "investigating", "planning", "editing", "verifying", "proposing")


def parse_json_block(text: str) -> dict[str, Any]:
    """The last ```json block of an agent's answer, or {} when there is none or it is invalid."""
    for raw in reversed(_JSON_BLOCK.findall(text)):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return {}


class RunStages(RunProposals):
    """A run's pipeline, stage by stage, as the task that executes it here."""

    async def _execute(self, run_id: int) -> None:
        run = await self.runs.get(run_id)
        live = self._live[run_id]
        with bind_context(run_id=run_id):
            try:
                await self._pipeline(run, live)
            except asyncio.CancelledError:
                await self._stopped(run_id, live)
            except Exception as exc:
                _log.exception("run failed unexpectedly")
                current = await self.runs.get(run_id)
                if current.state not in ("failed", "cancelled", "interrupted"):
                    await self.runs.fail(
                        run_id, current.state, f"{type(exc).__name__}: {exc}", actor="system"
                    )
                await self._report(run_id, f"❌ Run #{run_id} failed: {type(exc).__name__}: {exc}")
            finally:
                current = await self.runs.get(run_id)
                if current.state in ("failed", "cancelled"):
                    await self.close_proposal(current, f"run {run_id} {current.state}")
                if live.worktree is not None and current.state != "awaiting_approval":
                    await self.workspace.remove(live.worktree, delete_branch=True)
                if current.state not in LIVE_STATES:
                    await self.claims.release(run_id)
                self._live.pop(run_id, None)

    async def _stopped(self, run_id: int, live: _Live) -> None:
        run = await self.runs.get(run_id)
        if live.cancelled_by is not None:
            await self.runs.transition(run_id, "cancelled", actor=f"user:{live.cancelled_by}")
            await self._report(run_id, f"⏹ Run #{run_id} cancelled during {state_name(run.state)}.")
        elif run.state not in ("interrupted", "failed", "cancelled"):
            await self.runs.transition(run_id, "interrupted", actor="system", detail={"was": run.state})

    async def _pipeline(self, run: Run, live: _Live) -> None:
        try:
            await self._run_stages(run, live)
        except _StageFailure as failure:
            current = await self.runs.get(run.id)
            stage = current.state
            reason = failure.reason if failure.kind != "budget" else f"budget: {failure.reason}"
            await self.runs.fail(run.id, stage, reason, actor="pipeline")
            await self._write_lesson(current, outcome=f"failed({failure.kind})", root_cause=failure.reason)
            await self._report(run.id, f"❌ Run #{run.id} failed while {stage}: {reason}")

    async def _run_stages(self, run: Run, live: _Live) -> None:
        repo_root = self._settings.repo_dir.resolve()
        run = await self._stage(run, "observing", "🔎 gathering evidence")
        target = next((e.detail for e in await self.runs.events(run.id) if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        target_kind = await self._incident_kind(run.incident_id) or target.get("kind")
        from mendbot.improve.evidence.gather import (
            build_evidence,  # the evidence's modules load with the first run
        )

        pack = await build_evidence(
            self._db,
            repo_root,
            incident_id=run.incident_id,
            description=run.description,
            recall=self.memory.recall,
            fingerprint=fingerprint,
            kind=target.get("kind"),
            requester_id=run.requester_id,
            now=self._clock().timestamp(),
        )
        lessons = [lesson for lesson in pack.lessons if isinstance(lesson, Lesson)]
        evidence = self.runs.redactor.text(pack.render())
        await self.runs.event(
            run.id,
            "evidence",
            actor="pipeline",
            detail={
                "chars": len(evidence),
                "lessons": [lesson.run_id for lesson in lessons],
                "kinds": pack.kinds,
                "suspects": [f"{s.path}:{s.function}" for s in pack.suspects],
                "shown_calls": sorted(pack.shown_calls),
                "text": evidence,  # what the agent is given, as it is given (the dashboard shows it)
            },
        )
        # A suspect that is not on main (a cog never committed, a hand edit) is not in the worktree.
        unseen = await not_on_main(repo_root, {suspect.path for suspect in pack.suspects})
        if (line := unseen_line(unseen)) is not None:
            await self.runs.event(run.id, "not_on_main", actor="pipeline", detail={"files": unseen})
            live.lines.append(line)
            await self._progress(run)

        if run.proposal_id is None:  # a resumed run (or one stopped before recording it): start clean
            stale = Worktree(
                Path(run.worktree or self.workspace.path_for(run.id)),
                run.branch or branch_name(run.id, run.slug),
                run.base_sha or "",
            )
            await self.workspace.remove(stale, delete_branch=True)
        # Every session, read-only ones included, works in the run's own worktree: the live checkout
        # holds .env and data/, and the agent's commands run in a sandbox built around its cwd.
        live.worktree = await self.workspace.create(run.id, run.slug)
        run = await self._stage(
            run,
            "investigating",
            "🧠 investigating (read-only)",
            branch=live.worktree.branch,
            worktree=str(live.worktree.path),
            base_sha=live.worktree.base_sha,
        )
        # The plan is asked in the investigation's session: one CLI start fewer, and the agent plans
        # with what it read while investigating.
        async with self._agent_session(run, read_only=True) as ask:
            investigation = await ask(
                self._prompts.get("agent/investigate").render(request=run.description, evidence=evidence)
            )
            diagnosis = parse_json_block(investigation.text) or {
                "root_cause": investigation.text.strip()[:2000]
            }
            await self.runs.event(run.id, "diagnosis", actor="agent", detail=diagnosis)
            if run.kind != "investigate":
                run = await self._stage(run, "planning", "📝 planning the change")
                planning = await ask(
                    self._prompts.get("agent/plan").render(diagnosis=json.dumps(diagnosis, indent=2))
                )
        lesson_note = _lessons_note(lessons)
        if run.kind == "investigate":
            await self.runs.transition(run.id, "reported", actor="pipeline")
            await self._write_lesson(
                run,
                outcome="reported",
                root_cause=str(diagnosis.get("root_cause", "")),
                files=list(diagnosis.get("files", [])),
                fingerprint=fingerprint,
            )
            await self._report(run.id, _investigation_report(run, diagnosis) + lesson_note)
            return

        plan = parse_json_block(planning.text) or {"changes": planning.text.strip()[:2000], "risk": "medium"}
        await self.runs.event(run.id, "plan", actor="agent", detail=plan)
        await self._claim_files(run, live, plan)

        run = await self._stage(run, "editing", f"✏️ editing on `{live.worktree.branch}`")
        await self._agent(
            run,
            self._prompts.get("agent/edit").render(
                diagnosis=json.dumps(diagnosis, indent=2), plan=json.dumps(plan, indent=2), evidence=evidence
            ),
            read_only=False,
        )

        await self._verify_and_propose(
            run=run,
            live=live,
            diagnosis=diagnosis,
            plan=plan,
            fingerprint=fingerprint,
            lesson_note=lesson_note,
            prove=True,
            target_kind=target_kind,
        )

    async def _claim_files(self, run: Run, live: _Live, plan: dict[str, Any]) -> None:
        """Claim the files the plan declares; while a live run holds any of them, wait and say so."""
        assert live.worktree is not None

        async def waiting(holders: dict[int, list[str]], first: bool) -> None:
            held = {str(run_id): paths for run_id, paths in holders.items()}
            await self.runs.event(run.id, "claim_waiting", actor="pipeline", detail={"holders": held})
            if first:
                shown = "; ".join(
                    f"run #{other} holds {', '.join(f'`{p}`' for p in paths[:5])}"
                    for other, paths in sorted(holders.items())
                )
                live.lines.append(f"⏳ queued: {shown} — I start editing when it ends")
                await self._progress(await self.runs.get(run.id))

        claim, refused = await self.claims.declare(run, live.worktree.path, plan_files(plan), on_wait=waiting)
        live.claim = claim
        await self.runs.event(
            run.id, "claim", actor="pipeline", detail={"paths": claim.paths, "refused": refused}
        )
        line = f"📌 claimed {', '.join(f'`{p}`' for p in claim.paths[:8]) or 'no files'}"
        if refused:
            line += f" (not claimed: {'; '.join(refused[:3])})"
        live.lines.append(line)

    async def _execute_rollback(self, run_id: int, base_sha: str, merged_sha: str) -> None:
        live = self._live[run_id]
        run = await self.runs.get(run_id)
        with bind_context(run_id=run_id):
            try:
                live.worktree = await self.workspace.create(run.id, run.slug)
                run = await self._stage(
                    run,
                    "editing",
                    f"⏪ reverting `{merged_sha[:7]}` on `{live.worktree.branch}`",
                    branch=live.worktree.branch,
                    worktree=str(live.worktree.path),
                    base_sha=live.worktree.base_sha,
                )
                await self.workspace.apply_reverse(live.worktree, base_sha, merged_sha)
                diagnosis = {"root_cause": f"rolling back {merged_sha[:10]}"}
                plan = {
                    "changes": f"revert {base_sha[:10]}..{merged_sha[:10]}",
                    "risk": "low",
                    "rollback": "re-apply the reverted change",
                }
                await self._verify_and_propose(
                    run=run,
                    live=live,
                    diagnosis=diagnosis,
                    plan=plan,
                    fingerprint=None,
                    lesson_note="",
                    attempts=1,
                )
            except _StageFailure as failure:
                current = await self.runs.get(run_id)
                await self.runs.fail(run_id, current.state, failure.reason, actor="pipeline")
                await self._report(run_id, f"❌ Rollback run #{run_id} failed: {failure.reason}")
            except Exception as exc:
                _log.exception("rollback run failed unexpectedly")
                current = await self.runs.get(run_id)
                if current.state not in ("failed", "cancelled"):
                    await self.runs.fail(
                        run_id, current.state, f"{type(exc).__name__}: {exc}", actor="system"
                    )
                await self._report(run_id, f"❌ Rollback run #{run_id} failed: {type(exc).__name__}: {exc}")
            finally:
                current = await self.runs.get(run_id)
                if current.state in ("failed", "cancelled"):
                    await self.close_proposal(current, f"rollback run {run_id} {current.state}")
                if live.worktree is not None and current.state != "awaiting_approval":
                    await self.workspace.remove(live.worktree, delete_branch=True)
                self._live.pop(run_id, None)

    async def close_proposal(self, run: Run, reason: str) -> None:
        """Close the run's proposal if it is still open: a cancelled or failed run leaves none behind."""
        if run.proposal_id is None:
            return
        try:
            proposal = await self.forge.get(run.proposal_id)
            if proposal.state == "open":
                await self.forge.close(proposal.id, reason)
        except ForgeError as exc:  # the forge is unreachable: say so in the log, never wedge the run
            _log.warning("proposal_close_failed", run_id=run.id, proposal_id=run.proposal_id, error=str(exc))


def _lessons_note(lessons: list[Lesson]) -> str:
    if not lessons:
        return ""
    named = ", ".join(f"run {lesson.run_id} ({lesson.outcome})" for lesson in lessons[:3])
    return f"\n🧠 I have seen this before: {named}."


def _investigation_report(run: Run, diagnosis: dict[str, Any]) -> str:
    files = ", ".join(f"`{f}`" for f in diagnosis.get("files", [])[:5]) or "—"
    return (
        f"🔍 Run #{run.id} — investigation of: {run.description[:200]}\n"
        f"**Root cause:** {str(diagnosis.get('root_cause', '?'))[:800]}\n"
        f"**Files:** {files}\n**Confidence:** {diagnosis.get('confidence', '?')}\n"
        f"**Proposed fix:** {str(diagnosis.get('proposed_fix', '—'))[:600]}\n"
        f"Say `fix this` in reply to have me make the change."
    )
