"""The proofs SelfImprovementAgent (`mendbot.improve.service`) takes after a run's pipeline: of a proposal
branch a hand commit moved, of the deployed code once a fix is live, and of a rollback — each by the
Prover (`mendbot.improve.proof.prover`), recorded as a run event and told as one line for a report.
"""

from __future__ import annotations

from typing import Any

from mendbot.improve.progress import RunProgress
from mendbot.improve.proof.verdict import LiveReplay, Proof, load_proof
from mendbot.improve.runs import Run, RunEvent
from mendbot.kernel.log import get_logger

__all__ = ["RunProofs"]

_log = get_logger(__name__)


class RunProofs(RunProgress):
    """Proofs of a run's change outside its pipeline, each one line for the report that asked."""

    async def prove_live(self, run: Run, sha: str) -> LiveReplay:
        """After a deploy: replay the incident once against the deployed commit `sha` (in the sandbox,
        judged from outside like every replay). A failing replay says the fix does not hold live: the
        deploy regresses at once. A rollback's deploy is replayed as a rollback (`prove_rollback`).
        A replay that cannot run is reported and decides nothing; it never fails the deploy.
        """
        events = await self.runs.events(run.id)
        if any(event.event == "rollback_of" for event in events):
            return LiveReplay(await self.prove_rollback(run, sha))
        fingerprint, kind = await self._replay_target(run, events)
        _log.info("live replay started", run_id=run.id, sha=sha)
        try:
            proof = await self.prover.prove_deployed(
                run_id=run.id, sha=sha, base_sha=run.base_sha or "", fingerprint=fingerprint, kind=kind
            )
        except Exception as exc:
            _log.exception("live replay failed", run_id=run.id)
            line = f"\n⚠️ The replay against the live code could not run: {type(exc).__name__}: {exc}"
            return LiveReplay(self.runs.redactor.text(line))
        if proof is None:
            return LiveReplay()
        await self.runs.event(
            run.id,
            "proof_live",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": sha},
        )
        if proof.proven:
            shown = f"the recorded calls are answered ({len(proof.items)})"
            return LiveReplay(f"\n🧪 Replay against the live code: ✅ {shown}.")
        line = self.runs.redactor.text(f"\n❌ Replay against the live code: {proof.reason}")
        return LiveReplay(line, failed=proof.verdict == "disproven")

    async def prove_rollback(self, run: Run, sha: str) -> str:
        """After a rollback went live at `sha` (a rollback run's deploy, or an emergency rollback of
        `run`): replay the incident and say whether the recorded calls behave again as before the fix.
        One line for the report ("" when nothing is replayable); recorded as a `proof_rollback` event."""
        events = await self.runs.events(run.id)
        target = next((e.detail for e in events if e.event == "rollback_of"), None)
        subject = await self.runs.get(int(target["run_id"])) if target else run
        fingerprint, kind = await self._replay_target(subject, await self.runs.events(subject.id))
        try:
            proof = await self.prover.prove_rollback(
                run_id=run.id, sha=sha, fingerprint=fingerprint, kind=kind
            )
        except Exception as exc:
            _log.exception("rollback replay failed", run_id=run.id)
            line = f"\n⚠️ The replay after the rollback could not run: {type(exc).__name__}: {exc}"
            return self.runs.redactor.text(line)
        if proof is None:
            return ""
        await self.runs.event(
            run.id,
            "proof_rollback",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": sha},
        )
        if proof.proven:
            shown = "; ".join(
                f"`{item.label}`: {item.branch.text if item.branch else '?'}" for item in proof.items
            )
            return self.runs.redactor.text(
                f"\n🧪 Replay after the rollback: ✅ the recorded calls behave as before the fix ({shown})."
            )
        return self.runs.redactor.text(f"\n⚠️ Replay after the rollback: {proof.reason}")

    async def _replay_target(self, run: Run, events: list[RunEvent]) -> tuple[str | None, str | None]:
        """The fingerprint and kind a run's replay is about: its incident's, else what it was asked about."""
        target: dict[str, Any] = next((e.detail for e in events if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        kind = await self._incident_kind(run.incident_id) or target.get("kind")
        return fingerprint, kind

    async def reprove(self, run: Run, head_sha: str) -> str:
        """The proposal branch moved to `head_sha` (a hand commit) and passed its checks: prove
        that commit again — its regression tests against the run's base, the incident replayed —
        so the gate judges what would merge. Stored like the first proof; the newest one counts.

        One line for the re-verification message. A proof that cannot be taken leaves the head
        unproven (the gate then asks for "ship it unproven"); it never fails the run.
        """
        target = next((e.detail for e in await self.runs.events(run.id) if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        kind = await self._incident_kind(run.incident_id) or target.get("kind")
        try:
            proof = await self.prover.prove(
                run_id=run.id,
                base_sha=run.base_sha or "",
                sha=head_sha,
                fingerprint=fingerprint,
                kind=kind,
                shown=await self._shown_calls(run.id),
            )
        except Exception as exc:
            _log.exception("proving the moved head failed", run_id=run.id)
            line = f"\n🧪 The new head could not be proven ({type(exc).__name__}: {exc}): it is **unproven**."
            return self.runs.redactor.text(line)
        await self.runs.event(
            run.id,
            "proof",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": head_sha, "again": True},
        )
        return self.runs.redactor.text(f"\n🧪 Proof of `{head_sha[:7]}`: {proof.headline()}")

    async def proof_of(self, run_id: int) -> Proof | None:
        """The proof stored for a run's proposal (what /run shows), or None when none was taken."""
        return await load_proof(self._db, run_id)
