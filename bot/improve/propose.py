"""The verify-and-propose stage of a run, a layer of SelfImprovementAgent (`mendbot.improve.service`): the
pipeline — not the agent — commits the change; refuses one that carries what cannot be made inert,
touches protected paths without the security flag or leaves the run's claim; verifies the exact commit
and proves it, feeding failed checks and a proof that does not hold back to the agent up to
`max_attempts` times; scans the diff for secrets and opens the proposal, with the report saying how to
ship it.
"""

from __future__ import annotations

import json
from typing import Any

from mendbot.forge.base import Proposal
from mendbot.improve.agent.claims import covers
from mendbot.improve.agent.verify import Verification, verify_commit
from mendbot.improve.agent.workspace import HostileTree, NothingToCommitError, Worktree
from mendbot.improve.progress import RunProgress, _Live, _StageFailure
from mendbot.improve.proof.verdict import Proof
from mendbot.improve.runs import Run
from mendbot.kernel.money import usd
from mendbot.trust.path_rules import protected_entry
from mendbot.trust.sanitize import untrusted_block

__all__ = ["RunProposals"]


class RunProposals(RunProgress):
    """A run's change verified, proved and proposed — or refused, saying why."""

    async def _verify_and_propose(
        self,
        *,
        run: Run,
        live: _Live,
        diagnosis: dict[str, Any],
        plan: dict[str, Any],
        fingerprint: str | None,
        lesson_note: str,
        attempts: int | None = None,
        prove: bool = False,
        target_kind: str | None = None,
    ) -> None:
        assert live.worktree is not None
        verification, proof = await self._verify_with_retries(
            run, live, attempts=attempts, prove=prove, fingerprint=fingerprint, target_kind=target_kind
        )
        head = verification.sha
        diff = await self.workspace.diff(live.worktree, live.worktree.base_sha)
        run = await self._stage(run, "proposing", "📦 proposing", verified_sha=head, head_sha=head)
        from mendbot.trust.secret_scan import (
            scan_for_secrets,  # its ~20 patterns compile with the first proposal
        )

        secrets = scan_for_secrets(diff, self._secret_values())
        if secrets:
            raise _StageFailure(
                "secrets", "the diff contains what looks like a secret: " + "; ".join(secrets[:3])
            )
        diffstat = await self.workspace.diffstat(live.worktree, live.worktree.base_sha)
        files = await self.workspace.changed_files(live.worktree, live.worktree.base_sha)
        run = await self.runs.get(run.id)
        label = "" if proof is None or proof.proven else " (tested)" if proof.tested else " (unproven)"
        proposal = await self.forge.open_proposal(
            run_id=run.id,
            branch=live.worktree.branch,
            head_sha=head,
            title=self.runs.redactor.text(f"mendbot{label}: {run.description[:60]}"),
            body=self.runs.redactor.text(_proposal_body(run, diagnosis, plan, verification, diffstat, proof)),
        )
        run = await self.runs.transition(
            run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id
        )
        live.lines.append(f"✅ proposal ready: {proposal.shown}")
        await self._progress(run)
        await self._write_lesson(
            run,
            outcome="proposed",
            root_cause=str(diagnosis.get("root_cause", "")),
            files=files,
            fingerprint=fingerprint,
            fix_commit=head,
        )
        needs_unproven = proof is not None and not proof.meets(self._settings.deploy.require_proof)
        await self._report(
            run.id,
            _proposal_report(run, proposal, verification, proof, needs_unproven) + lesson_note,
            diff=diff,
        )

    async def _verify_with_retries(
        self,
        run: Run,
        live: _Live,
        *,
        attempts: int | None = None,
        prove: bool = False,
        fingerprint: str | None = None,
        target_kind: str | None = None,
    ) -> tuple[Verification, Proof | None]:
        assert live.worktree is not None
        worktree = live.worktree
        attempts = attempts or self._config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                sha = await self.workspace.commit(
                    worktree, f"mendbot run {run.id}: {run.description[:60]}", run.id
                )
            except NothingToCommitError:
                if attempt == 1:
                    raise _StageFailure("no_change", "the agent made no change") from None
                sha = await self.workspace.head(worktree)
            except HostileTree as exc:
                raise _StageFailure("hostile_tree", str(exc)) from None
            await self._refuse_hostile(run, worktree, sha)
            await self._refuse_protected(run, worktree)
            await self._refuse_unclaimed(run, live)
            run = await self._stage(
                run, "verifying", f"🧪 verifying (attempt {attempt}/{attempts})", attempts=attempt
            )
            verification = await verify_commit(
                self.workspace,
                sha,
                self._config.checks,
                self._config.check_timeout_s,
                sandbox=self.sandbox,
                name=f"run-{run.id}-verify",
                redact=self.runs.redactor.text,
                base=worktree.base_sha,  # a failure main has too is not the change's
            )
            await self.runs.event(
                run.id,
                "checks",
                actor="pipeline",
                detail={
                    "ok": verification.ok,
                    "sha": verification.sha,
                    "summary": verification.summary(),
                    # each check with the end of its output: the dashboard shows it folded
                    "checks": [
                        {
                            "command": check.command,
                            "ok": check.ok,
                            "exit_code": check.exit_code,
                            "duration_s": round(check.duration_s, 2),
                            "output": check.output_tail,
                        }
                        for check in verification.checks
                    ],
                },
            )
            if verification.limit_hit:
                # A fork bomb, a full /tmp, a check that never ends: not a failure to hand back for
                # another attempt, but code that has to be stopped.
                raise _StageFailure("limit", verification.limit_hit)
            if verification.ok:
                if not prove:
                    return verification, None
                proof = await self._prove(run, worktree, verification.sha, fingerprint, target_kind)
                feedback = proof.feedback()
                if feedback is not None and attempt < attempts:
                    # "Your test passes without your fix", "the replay still fails": like failed checks,
                    # something the agent can act on, so it gets another attempt.
                    run = await self._stage(
                        run, "editing", f"🔁 the proof does not hold; attempt {attempt + 1}"
                    )
                    await self._agent(
                        run,
                        self._prompts.get("agent/proof").render(
                            attempt=str(attempt + 1),
                            max_attempts=str(attempts),
                            failures=untrusted_block(
                                "proof of the fix", self.runs.redactor.text(feedback), limit=12_000
                            ),
                        ),
                        read_only=False,
                    )
                    continue
                if proof.verdict == "disproven" and self._settings.deploy.require_proof != "off":
                    raise _StageFailure(
                        "proof",
                        "not proposed: the change does not fix the reported failure — " + proof.reason,
                    )
                return verification, proof
            if attempt == attempts:
                raise _StageFailure(
                    "checks", f"the checks still fail after {attempts} attempt(s):\n" + verification.summary()
                )
            failures = untrusted_block(
                "output of the failing checks", verification.failure_report(), limit=12_000
            )
            run = await self._stage(run, "editing", f"🔁 checks failed; attempt {attempt + 1}")
            await self._agent(
                run,
                self._prompts.get("agent/retry").render(
                    attempt=str(attempt + 1), max_attempts=str(attempts), failures=failures
                ),
                read_only=False,
            )
        raise AssertionError("unreachable")

    async def _prove(
        self, run: Run, worktree: Worktree, sha: str, fingerprint: str | None, target_kind: str | None
    ) -> Proof:
        live = self._live[run.id]
        live.lines.append("🧪 proving: the failure on the base, gone on the branch")
        await self._progress(run)
        proof = await self.prover.prove(
            run_id=run.id,
            base_sha=worktree.base_sha,
            sha=sha,
            fingerprint=fingerprint,
            kind=target_kind,
            shown=await self._shown_calls(run.id),
        )
        await self.runs.event(
            run.id,
            "proof",
            actor="pipeline",
            detail={
                "verdict": proof.verdict,
                "reason": proof.reason,
                "overhead_s": round(proof.overhead_s, 2),
            },
        )
        return proof

    def _secret_values(self) -> list[str]:
        """The bot's own secrets, which no proposed diff may carry in any form."""
        values = (self._settings.discord_token, self._settings.anthropic_api_key, self._settings.github_token)
        return [value.get_secret_value() for value in values if value is not None]

    async def _refuse_hostile(self, run: Run, worktree: Worktree, sha: str) -> None:
        """The committed change carries nothing that cannot be made inert (`mendbot.trust.trees`): checked
        on the commit itself, whatever made it."""
        try:
            await self.workspace.check_change(worktree.base_sha, sha)
        except HostileTree as exc:
            raise _StageFailure("hostile_tree", str(exc)) from None

    async def _refuse_protected(self, run: Run, worktree: Worktree) -> None:
        """A run without the security flag may not change the trust base, however the files changed.

        The guard refuses the agent's own edits of protected paths, but code the agent wrote (a test, a
        script) can write anywhere in the worktree; the committed change is what counts.
        """
        if run.security:
            return
        changed = await self.workspace.changed_files(worktree, worktree.base_sha)
        protected = self._config.protected_paths
        touched = [path for path in changed if protected_entry(path, protected)]
        if touched:
            shown = ", ".join(f"`{path}`" for path in touched[:5])
            raise _StageFailure(
                "protected",
                f"the change touches protected paths ({shown}); ask again with security=true if it"
                " must, and it will need the `ship it security` approval",
            )

    async def _refuse_unclaimed(self, run: Run, live: _Live) -> None:
        """The committed change stays within the claim, however the files changed (code the agent ran)."""
        if live.claim is None or live.worktree is None:
            return
        changed = await self.workspace.changed_files(live.worktree, live.worktree.base_sha)
        outside = [path for path in changed if not covers(live.claim.paths, path)]
        if outside:
            shown = ", ".join(f"`{path}`" for path in outside[:5])
            raise _StageFailure(
                "claim",
                f"the change touches files outside the run's claim ({shown}); claimed: {live.claim.shown()}",
            )


def _proof_section(proof: Proof | None) -> list[str]:
    if proof is None:
        return []
    return ["## Proof", proof.headline(), "", proof.table(), ""]


def _proposal_body(  # noqa: PLR0917 (private renderer called from one place)
    run: Run,
    diagnosis: dict[str, Any],
    plan: dict[str, Any],
    verification: Verification,
    diffstat: str,
    proof: Proof | None = None,
) -> str:
    return "\n".join(
        [
            f"Run-Id: {run.id} · requested by user {run.requester_id}"
            + (f" · incident #{run.incident_id}" if run.incident_id else ""),
            "",
            "## Diagnosis",
            str(diagnosis.get("root_cause", "?")),
            "",
            "## Plan",
            json.dumps(plan.get("changes", plan), indent=2),
            "",
            f"**Risk:** {plan.get('risk', 'medium')}",
            f"**Tests:** {plan.get('tests', '—')}",
            f"**Rollback:** {plan.get('rollback', 'revert this merge')}",
            "",
            *_proof_section(proof),
            "## Checks",
            verification.summary(),
            "",
            "## Diffstat",
            "```",
            diffstat.strip(),
            "```",
            "",
            f"Cost so far: {usd(run.cost_usd)}",
        ]
    )


def _proposal_report(
    run: Run,
    proposal: Proposal,
    verification: Verification,
    proof: Proof | None = None,
    needs_unproven: bool = False,
) -> str:
    """The proposal's message in chat, but its diff: the chat side puts the change itself under the first
    line, where it fits, or attaches it (`mendbot.runtime.run_text.proposal_message`)."""
    proven = proof is None or proof.proven
    how = (
        "To ship it anyway, an allow-listed developer replies **ship it unproven**."
        if needs_unproven
        else "To ship it, an allow-listed developer replies **ship it** or reacts ✅ on this message."
    )
    label = (
        "fix ready for review"
        if proven
        else "**tested** fix ready for review"
        if proof is not None and proof.tested
        else "**unproven** fix ready for review"
    )
    proof_text = f"{proof.chat()[:900]}\n" if proof is not None else ""
    where = f": {proposal.link}" if proposal.link else f" (proposal #{proposal.id})"
    return (
        f"🛠 Run #{run.id} — {label}{where}\n{proof_text}{verification.summary()}\n"
        f"Cost: {usd(run.cost_usd)}. {how}"
    )
