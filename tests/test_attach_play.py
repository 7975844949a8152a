"""`mendbot attach --play -- python bot.py`: a bot someone else wrote, with mendbot attached, in the
playground's virtual Discord with the playground's grammar — no Discord application, no token, no
network: its commands answer, its failure is recorded and announced in #dev."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness.hosts import host_repo
from tests.harness.wheel import installed_wheel

SCRIPT = """\
!add solaris 0
!stock dune
!stock dune
!stock dune
!stock dune
!stock dune
#dev
wait
"""


async def test_a_bot_plays_in_the_virtual_discord_with_mendbot_attached(tmp_path: Path) -> None:
    """Its own `!add` answers, its failing `!stock` gets mendbot's apology, and #dev shows the incident;
    the program ends when the script does, with nothing of a real Discord touched, and nothing of mendbot
    fails on the way in or out (no traceback, no handler map written to a closed database)."""
    repo = host_repo(tmp_path, "shelf")
    (repo / "mendbot.yaml").write_text(
        "data_dir: .mendbot\nhealth: {enabled: false}\nimprove: {autonomy: 'off'}\n"
        "observe: {announce_new_fingerprints: false}\n"
        "bot: {entry: [python, bot.py], token_env: SHELF_TOKEN}\n"
    )
    wheel = installed_wheel()
    environment = {"PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        str(wheel.mendbot),
        "attach",
        "--play",
        cwd=repo,
        env={**environment, "SHELF_TOKEN": "never-used"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(SCRIPT.encode()), 120)
    shown = out.decode()
    assert process.returncode == 0, err.decode()[-2000:]
    assert "mendbot playground ready — your bot (ShelfBot) with mendbot attached" in shown
    assert "shelved 0 × solaris" in shown
    assert shown.count("Something went wrong on my side (ZeroDivisionError)") == 5
    assert "Incident #1: the `stock` command" in shown, shown[-3000:]
    said = shown + err.decode()
    assert "Traceback" not in said and "handler map failed" not in said, said[-3000:]
