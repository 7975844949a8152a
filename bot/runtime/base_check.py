"""The check of a bot's committed HEAD when `mendbot attach` starts it: no run is spent to learn that the
base is broken.

Once the bot has connected to Discord, in the background, its checks and its smoke load (its own program
started in the sandbox: `mendbot.trust.host_start`) run on the commit its checkout is at — once per
commit and per what verifies it (`mendbot.improve.agent.verify.verify_base` keeps the outcome; `mendbot
adopt` checks the same way, so a commit adopt checked is not checked again) — and the outcome is said in
one line each, on the console and in the dev channel: `✅ your bot starts in the sandbox on abc1234 …`, or
what fails and what to change in mendbot.yaml. A run's verify later compares with the same kept outcome
(a failure the base shares does not fail the run). Off with `improve.check_base_at_start: false`, and in
the local virtual Discord (`--play`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger

if TYPE_CHECKING:
    from mendbot.runtime.attachment import Attachment

__all__ = ["check_base_once"]

_log = get_logger(__name__)


async def check_base_once(mend: Attachment) -> None:
    """Check the committed HEAD of the bot `mend` is attached to, unless it was checked before, and say the
    outcome (module docstring). Never raises: the bot runs on whatever happens here."""
    settings = mend.services.settings
    if settings.bot is None or not settings.improve.check_base_at_start:
        return
    try:
        head = await git(settings.repo_dir.resolve(), "rev-parse", "HEAD", check=False, timeout_s=30)
        if head.code != 0:
            return
        improve = (await mend.services.complete()).improve
        from mendbot.improve.agent.verify import base_report, verify_base  # with the half that runs fixes

        verification, fresh = await verify_base(
            improve.workspace,
            head.output.strip(),
            settings.improve.checks,
            settings.improve.check_timeout_s,
            sandbox=improve.sandbox,
            redact=mend.services.redactor.text,
        )
    except Exception:
        _log.exception("the check of the bot's committed HEAD could not run")
        return
    if not fresh:
        _log.info("the committed HEAD was checked before", sha=verification.sha, ok=verification.ok)
        return
    lines = base_report(verification)
    for line in lines:
        _log.warning(line)
    await mend.bot.wait_until_ready()
    try:
        await mend.send_dev("\n".join(lines)[:2000])
    except Exception:  # Discord's refusal: the console has said it
        _log.exception("the outcome of the base check could not be posted in the dev channel")
