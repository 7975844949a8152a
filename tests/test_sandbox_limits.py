"""What the kernel holds every sandboxed command to, and what the worktree overlay lets through.

Real bubblewrap, the real supervisor: a fork bomb stops at the process limit (and, with the supervisor's
watch slowed down, at the kernel's own bound), /tmp and the worktree's growth are tmpfs sizes, the wall
clock holds a command that closed its pipes and stopped the supervisor, CPU time is reported, and the
verdict comes from the supervisor's own channel — never from what the command prints or writes. A
writable jail's changes reach the host's tree (symlinks as symlinks, modes, mtimes, deletions, replaced
directories) without ever following a symlink; a read-only jail's never do. Kernel settings stay out of
reach, also for a user mapped to the host's root.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

import mendbot.trust.sandbox
from mendbot.trust.sandbox import Jail, JailResult, Limits, Sandbox

REPO = Path(__file__).resolve().parent.parent
SMALL = Limits(processes=32, tmp_mb=16, worktree_grow_mb=16, cpu_s=1)
SANDBOX = Sandbox(limits=SMALL)


def fork_bomb(cap: int = 150) -> str:
    """Forks until the kernel refuses, then sleeps; reports how far it got. Never more than `cap`
    processes: without a limit the test fails without taking the machine down, and when this suite
    runs inside a sandbox (the verify gate of a run on mendbot) the bomb stays below that sandbox's
    own limit."""
    return _FORK_BOMB.replace("CAP", str(cap))


_FORK_BOMB = """
import os, time
count = 0
while count < CAP:
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        count += 1
    except OSError as exc:
        print(f"refused after {count}: {exc.strerror}", flush=True)
        break
else:
    print(f"never refused: {count}", flush=True)
while True:
    time.sleep(1)
"""


async def _run(jail: Jail, script: str, wall_s: float = 30) -> JailResult:
    return await jail.run([jail.python, "-c", script], jail.environment(), wall_s=wall_s)


async def _shell(jail: Jail, script: str, wall_s: float = 30) -> JailResult:
    return await jail.run(["/bin/sh", "-ec", script], jail.environment(), wall_s=wall_s)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    path = tmp_path / "tree"
    path.mkdir()
    return path


async def test_a_fork_bomb_is_stopped_at_the_process_limit(tree: Path) -> None:
    """The supervisor sees the count reach the limit, ends everything at once and says why."""
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        started = time.perf_counter()
        result = await _run(jail, fork_bomb(), wall_s=30)

    assert result.limit == "process limit 32 reached", result.process.output
    assert time.perf_counter() - started < 10
    assert result.process.code == 124


async def test_the_kernel_bounds_the_processes_even_when_the_watch_is_slow(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the supervisor's watch slowed past the wall clock, fork itself fails: pid_max of the sandbox's
    PID namespace (and RLIMIT_NPROC for a bot that is not root) hold the tree, not a poll."""
    if Sandbox().nested:
        pytest.skip("inside a sandbox /proc/sys is read-only: the outer sandbox's pid_max is the bound")
    slow = tmp_path / "supervise.py"
    source = mendbot.trust.sandbox.SUPERVISOR.read_text()
    assert "\n_POLL_S = 0.1\n" in source
    slow.write_text(source.replace("\n_POLL_S = 0.1\n", "\n_POLL_S = 60.0\n"))
    monkeypatch.setattr(mendbot.trust.sandbox, "SUPERVISOR", slow)

    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _run(jail, fork_bomb(cap=1500), wall_s=5)

    output = result.process.output
    assert "refused after" in output, output
    count = int(output.split("refused after ", 1)[1].split(":", 1)[0])
    # RLIMIT_NPROC holds a non-root bot to the limit itself; for root, pid_max holds it to the limit
    # plus the 300 PIDs the kernel never reuses.
    assert count <= 32 + 300, output
    assert result.limit == "killed after 5 s (wall clock)"


async def test_tmp_is_refused_past_its_size(tree: Path) -> None:
    """1 GiB to /tmp: the writes stop at the tmpfs's size and the command is told ENOSPC; so is /dev/shm."""
    write = (
        "import sys\nchunk = b'x' * (1 << 20)\nwritten = 0\n"
        "try:\n    with open(sys.argv[1], 'wb') as f:\n        for _ in range(1024):\n"
        "            f.write(chunk)\n            written += 1\n"
        "except OSError as exc:\n    print(f'stopped at {written} MiB: {exc.strerror}')\n"
    )
    async with Sandbox(limits=Limits(tmp_mb=256)).jail(tree, git_dir=None) as jail:
        env = jail.environment()
        tmp = await jail.run([jail.python, "-c", write, "/tmp/big"], env, wall_s=60)
        shm = await jail.run([jail.python, "-c", write, "/dev/shm/big"], env, wall_s=60)

    assert re.search(r"stopped at 25[56] MiB: No space left", tmp.process.output), tmp.process.output
    assert tmp.limit == "/tmp limit 256 MB reached"
    assert "No space left" in shm.process.output and shm.limit == "/dev/shm limit 256 MB reached"


async def test_the_worktree_grows_no_more_than_its_limit(tree: Path) -> None:
    """A command writing 64 MB into the tree is stopped at 16 MB, and no more than that reaches the host."""
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _shell(jail, "head -c 67108864 /dev/zero > big.bin || echo refused")

    assert "refused" in result.process.output
    assert result.limit == "worktree growth limit 16 MB reached"
    assert (tree / "big.bin").stat().st_size <= 16 * 1024 * 1024


async def test_a_command_that_closes_its_pipes_is_killed_on_time(tree: Path) -> None:
    """Closing stdout and stderr (and stopping the supervisor, PID 1) does not escape the wall clock."""
    script = "import os, signal, time\nos.kill(1, signal.SIGSTOP)\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        started = time.perf_counter()
        result = await _run(jail, script, wall_s=1)

    assert time.perf_counter() - started < 5
    assert result.limit == "killed after 1 s (wall clock)"
    assert not result.process.timed_out  # the supervisor's clock, not the host's backstop


async def test_cpu_time_past_its_limit_is_reported(tree: Path) -> None:
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _run(jail, "while True:\n    pass\n", wall_s=30)

    assert result.limit == "CPU time limit 1 s reached"


async def test_the_verdict_cannot_be_forged_by_the_command(tree: Path) -> None:
    """A command claiming a limit in its output, writing a verdict into every descriptor it holds or can
    open through /proc, and signalling the supervisor reached no limit: the verdict says so."""
    script = """
import glob, os, signal
fake = b'{"limit": "process limit 32 reached"}\\n'
print("[sandbox] process limit 32 reached", flush=True)
for fd in range(3, 256):
    try:
        os.write(fd, fake)
    except OSError:
        pass
opened = []
for path in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        continue
    opened.append(path)
    try:
        os.write(fd, fake)
    except OSError:
        pass
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
    os.kill(1, sig)
print("opened", opened, flush=True)
"""
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _run(jail, script)

    assert result.process.code == 0, result.process.output
    assert "[sandbox] process limit 32 reached" in result.process.output
    assert result.limit is None
    opened = result.process.output.split("opened ", 1)[1]
    assert "/proc/1/" not in opened  # the supervisor's descriptors are out of reach


async def test_kernel_settings_are_read_only_inside(tree: Path) -> None:
    """/proc/sys is read-only: a user mapped to the host's root would otherwise set the host's kernel
    settings (here it writes back the value it read, so nothing changes either way)."""
    script = """
targets = ["/proc/sys/vm/stat_interval", "/proc/sys/kernel/pid_max"]
for path in targets:
    value = open(path).read()
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        print(path, "refused", exc.strerror)
    else:
        print(path, "WRITTEN")
"""
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _run(jail, script)

    assert "WRITTEN" not in result.process.output, result.process.output
    assert result.process.output.count("refused Read-only file system") == 2


async def test_no_certificate_authority_is_inside(tree: Path) -> None:
    """Nothing inside reaches another host, so no CA certificate is there to load: the host's, loaded by
    every process that imports aiohttp, cost each replayed bot, smoke load and check ~50 ms of CPU."""
    script = "import ssl; print(ssl.create_default_context().cert_store_stats())"
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        result = await _run(jail, script)
    assert "'x509_ca': 0" in result.process.output, result.process.output


def _host_tree(tree: Path, outside: Path) -> None:
    (tree / "a.txt").write_text("a\n")
    (tree / "a.txt").chmod(0o644)
    (tree / "exe.sh").write_text("#!/bin/sh\n")
    (tree / "exe.sh").chmod(0o755)
    (tree / "gone.txt").write_text("gone\n")
    (tree / "gone_dir").mkdir()
    (tree / "gone_dir" / "x").write_text("x\n")
    (tree / "replaced_dir").mkdir()
    (tree / "replaced_dir" / "old").write_text("old\n")
    (tree / "dir_to_file").mkdir()
    (tree / "dir_to_file" / "y").write_text("y\n")
    (tree / "file_to_dir").write_text("file\n")
    (tree / "link").symlink_to("a.txt")
    (tree / "kept").mkdir()
    (tree / "kept" / "same.txt").write_text("same\n")
    (tree / ".git").write_text("gitdir: /nowhere\n")
    outside.mkdir()


def _listing(tree: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry's mode, size and content (a symlink's target), without following links."""
    listing = {}
    for path in tree.rglob("*"):
        info = path.lstat()
        if path.is_symlink():
            body = os.readlink(path).encode()
        else:
            body = path.read_bytes() if path.is_file() else b""
        listing[path.relative_to(tree).as_posix()] = (info.st_mode, info.st_size, body)
    return listing


CHANGES = """
echo more >> a.txt
chmod 600 a.txt
echo new > new.txt
touch -d '2020-01-02 03:04:05' new.txt
chmod u+s,g+s exe.sh
rm gone.txt
rm -r gone_dir
rm -r replaced_dir && mkdir replaced_dir && echo fresh > replaced_dir/fresh
rm -r dir_to_file && echo now-a-file > dir_to_file
rm file_to_dir && mkdir file_to_dir && echo inner > file_to_dir/inner
ln -sfn new.txt link
ln -s "$OUTSIDE/target" escape
echo through-the-link > escape || echo no-such-place-in-here
mkdir -p deep/er && echo deep > deep/er/f
mkfifo fifo
echo repointed > .git || echo git-pointer-read-only
"""


async def test_a_writable_jail_copies_its_changes_back(tree: Path, tmp_path: Path) -> None:
    """New, changed and deleted files, modes and mtimes, symlinks as symlinks, directories replaced either
    way reach the host's tree; setuid bits, fifos and the .git pointer do not; nothing is written through
    a symlink."""
    outside = tmp_path / "outside"
    _host_tree(tree, outside)
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        env = jail.environment({"OUTSIDE": str(outside)})
        result = await jail.run(["/bin/sh", "-ec", CHANGES], env, wall_s=30)

    assert result.process.code == 0 and result.limit is None, result.process.output
    assert "git-pointer-read-only" in result.process.output
    assert (tree / "a.txt").read_text() == "a\nmore\n"
    assert stat.S_IMODE((tree / "a.txt").stat().st_mode) == 0o600
    assert (tree / "new.txt").read_text() == "new\n"
    assert time.gmtime((tree / "new.txt").stat().st_mtime)[:3] == (2020, 1, 2)
    assert stat.S_IMODE((tree / "exe.sh").stat().st_mode) == 0o755  # setuid/setgid dropped
    assert not (tree / "gone.txt").exists() and not (tree / "gone_dir").exists()
    assert sorted(os.listdir(tree / "replaced_dir")) == ["fresh"]
    assert (tree / "dir_to_file").read_text() == "now-a-file\n"
    assert (tree / "file_to_dir" / "inner").read_text() == "inner\n"
    assert os.readlink(tree / "link") == "new.txt"
    assert os.readlink(tree / "escape") == str(outside / "target")
    assert not (outside / "target").exists()  # neither the command nor the copy-back wrote through it
    assert (tree / "deep" / "er" / "f").read_text() == "deep\n"
    assert not (tree / "fifo").exists()
    assert (tree / ".git").read_text() == "gitdir: /nowhere\n"
    assert (tree / "kept" / "same.txt").read_text() == "same\n"


async def test_the_copy_back_never_writes_through_a_symlink_on_the_host(tree: Path, tmp_path: Path) -> None:
    """A directory made a symlink to the outside by one command, and a directory again by the next: the
    second copy-back replaces the link, it does not write into what it pointed at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "sub").mkdir()
    async with SANDBOX.jail(tree, git_dir=None) as jail:
        first = await _shell(jail, f"rm -r sub && ln -s {outside} sub")
        assert os.readlink(tree / "sub") == str(outside), first.process.output
        second = await _shell(jail, "rm sub && mkdir sub && echo planted > sub/planted")

    assert second.process.code == 0, second.process.output
    assert not (tree / "sub").is_symlink() and (tree / "sub" / "planted").read_text() == "planted\n"
    assert list(outside.iterdir()) == []


async def test_a_read_only_jail_never_changes_the_host_tree(tree: Path, tmp_path: Path) -> None:
    """The command sees its own writes (a private overlay); the host's tree is exactly as before."""
    outside = tmp_path / "outside"
    _host_tree(tree, outside)
    before = _listing(tree)
    async with SANDBOX.jail(tree, git_dir=None, writable=False) as jail:
        env = jail.environment({"OUTSIDE": str(outside)})
        result = await jail.run(["/bin/sh", "-ec", CHANGES + "cat new.txt a.txt\n"], env, wall_s=30)

    assert result.process.code == 0, result.process.output
    assert "new\na\nmore\n" in result.process.output
    assert _listing(tree) == before
    assert (tree / "a.txt").read_text() == "a\n" and (tree / "gone.txt").exists()
    assert list(outside.iterdir()) == []


NESTED = """
import asyncio, tempfile
from pathlib import Path
from mendbot.trust.sandbox import Limits, Sandbox

BOMB = {bomb!r}

async def main():
    sandbox = Sandbox(limits=Limits(processes=16, tmp_mb=16, worktree_grow_mb=16))
    print("nested", sandbox.nested, flush=True)
    with tempfile.TemporaryDirectory() as temp:
        tree = Path(temp)
        async with sandbox.jail(tree, git_dir=None) as jail:
            env = jail.environment()
            bomb = await jail.run([jail.python, "-c", BOMB], env, wall_s=20)
            wrote = await jail.run(["/bin/sh", "-c", "echo inner > made"], env, wall_s=20)
        print("bomb:", bomb.limit, flush=True)
        print("made:", (tree / "made").read_text().strip(), wrote.limit, flush=True)

asyncio.run(main())
"""


async def test_a_sandbox_inside_a_sandbox_keeps_its_limits_and_copy_back(tmp_path: Path) -> None:
    """What mendbot's own tests do under the verify gate: a sandbox started inside a read-only jail on
    a copy of this code still stops a fork bomb and copies a writable jail's changes back."""
    # A copy: overlayfs takes no lower directory with something mounted below it, as this checkout is
    # when the suite itself runs in a sandbox (its `.git`).
    code = tmp_path / "code"
    shutil.copytree(REPO / "bot", code / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    async with Sandbox().jail(code, git_dir=None, writable=False) as jail:
        result = await jail.run(
            # Below the outer sandbox's own limit: for a bot running as root the kernel's bound on the
            # inner one is the outer's (RLIMIT_NPROC does not apply to root, and the inner /proc/sys is
            # read-only), the inner supervisor's watch is what stops it at its own limit.
            [jail.python, "-c", NESTED.format(bomb=fork_bomb())],
            jail.environment(),
            wall_s=120,
        )

    output = result.process.output
    assert "nested True" in output, output
    assert "bomb: process limit 16 reached" in output, output
    assert "made: inner None" in output, output
    assert result.limit is None
