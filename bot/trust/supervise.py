"""The first process inside the sandbox: limits the kernel enforces, a wall clock, bounded output, and a
verdict the sandboxed command cannot forge.

`mendbot.trust.sandbox` runs it as `python -I -S supervise.py '<limits json>' -- argv…` as PID 1 of an outer
bubblewrap sandbox (stage 1), bound read-only from the live checkout (the worktree's copy is never the
one that runs). It uses the standard library only (`-I -S`). Stage 1 holds what only the supervisor may
touch: a tmpfs of `tree.mb` for the worktree's changes (`tree.root`), and for a writable jail the host's
worktree bound writable (`tree.host`). The command runs in a second bubblewrap sandbox (stage 2, the
`inner` argv) the supervisor starts, in a user namespace below the supervisor's, which sees stage 1
read-only except `/tmp`, `/dev/shm`, `/proc` (not `/proc/sys`) and the worktree — an overlay, the
host's tree read-only below, writes going to `tree.root` — and nothing of the supervisor's private
directory. So:

- **processes**: the supervisor lowers its PID namespace's `pid_max` (per namespace since Linux 6.14)
  to `processes` + its helpers + the 300 PIDs the kernel no longer hands out once its counter passed
  them, and sets RLIMIT_NPROC to `processes` + its helpers (exact, but the kernel does not apply it to a
  user mapped to the host's root): a fork past the bound fails in every case. The command cannot raise
  either (`/proc/sys` is read-only to it; a hard rlimit only goes down). The supervisor counts the
  command's tasks (threads included) every 0.1 s and ends everything when they reach `processes`;
- **/tmp, /dev/shm and the worktree's growth** are tmpfs sizes, so a write past them fails (ENOSPC); the
  supervisor reports one it saw full (every 0.1 s and at the end);
- **the wall clock** holds whatever the command does with its pipes: at `wall_s` the supervisor kills
  every other process of its PID namespace (`kill(-1)`), stage 2 and everything in it included. When
  the command's main process ends, so does everything it left behind, whatever holds its pipe;
- **CPU seconds, address space, file size and open files** are rlimits of each process (set before
  stage 2 starts): with `processes`, the tree's total is bounded by their product. A command killed by
  SIGXCPU after `cpu_s` of CPU is reported;
- **output**: at most `output_bytes` of stdout and stderr (one pipe) are copied to its own stdout, the
  rest dropped and counted.

After the command ends (also when it was killed), for a writable jail the supervisor copies the
worktree's changes back to the host: it reads the overlay's upper directory (new and changed regular
files and symlinks, directories, whiteouts for deletions, opaque directories for replaced ones) and
mirrors them on `tree.host` without following a symlink on either side; fifos, sockets and devices do
not leave the sandbox, setuid/setgid bits are dropped, and `tree.keep` (the worktree's `.git`) is never
touched. For a read-only jail nothing goes back.

It exits with the command's status (128 + signal number when a signal ended it, 124 when the sandbox
killed it, 127 when it could not start) and writes `[sandbox] …` notes after the output. The verdict —
which limit, if any, was reached — goes as one JSON line (`{"limit": "process limit 256 reached"}` or
`{"limit": null}`) to `verdict_fd`, a pipe only the host and the supervisor hold (then the reason is
not repeated in the output): the supervisor marks it close-on-exec before anything starts, and the
command can neither signal the supervisor (PID 1 has no handler for what it could send), nor ptrace it
or open its `/proc/1/fd` (a user namespace above the command's). Nothing the command prints or writes
is taken for the verdict.

Nested in another mendbot sandbox (mendbot's own tests under the verify gate) the supervisor is not
PID 1: it shares the outer sandbox's PID namespace and /proc (bubblewrap finds its child there by PID,
and no new /proc can be mounted), becomes a subreaper instead, and kills what is below it rather than
the whole namespace. Its `pid_max` is the outer one's and the nested command could signal it: there,
the outer sandbox is the boundary.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import stat
import sys
import time

# Every command pays for the supervisor's start: no `typing`, `dataclasses` or `shutil` at import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["main"]

_CHUNK = 65536
_POLL_S = 0.1
_QUIESCE_S = 5.0  # how long killed processes get to be gone before the copy-back reads their writes
_HELPERS = 2  # the supervisor and stage 2's bwrap: the tasks of the PID namespace that are not the command's
_PID_RESERVED = 300  # once the PID counter passed it, the kernel allocates PIDs from 300 up only
_WHITEOUT = 0  # the device number overlayfs marks a deleted entry with (a character device 0:0)
_OPAQUE = "user.overlay.opaque"
_LIMITS = {
    "memory_bytes": resource.RLIMIT_AS,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
}


def _set_limit(which: int, value: int, hard: int | None = None) -> None:
    _, ceiling = resource.getrlimit(which)
    hard = value if hard is None else hard
    if ceiling != resource.RLIM_INFINITY:
        value, hard = min(value, ceiling), min(hard, ceiling)
    resource.setrlimit(which, (value, hard))


def _set_limits(limits: dict[str, Any]) -> None:
    """The rlimits of every process of the command (set in the child that becomes stage 2)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key, which in _LIMITS.items():
        value = int(limits.get(key) or 0)
        if value > 0:
            _set_limit(which, value)
    cpu_s = int(limits.get("cpu_s") or 0)
    if cpu_s > 0:  # SIGXCPU at the soft limit (reported), SIGKILL at the hard one if it is caught
        _set_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 2)
    processes = int(limits.get("processes") or 0)
    if processes > 0:
        _set_limit(resource.RLIMIT_NPROC, processes + _HELPERS)


def _cap_pids(processes: int) -> bool:
    """Lower this PID namespace's pid_max so the kernel refuses a fork past the bound, whoever runs."""
    bound = _PID_RESERVED + processes + _HELPERS + 1
    try:
        with open("/proc/sys/kernel/pid_max", "r+") as sysctl:
            if int(sysctl.read().strip() or 0) > bound:
                sysctl.seek(0)
                sysctl.write(str(bound))
        return True
    except (OSError, ValueError):  # before Linux 6.14 pid_max is global (and not ours to write)
        return False


def _start(command: list[str], write_fd: int, limits: dict[str, Any]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: the command's limits, one pipe for both streams, then stage 2
        try:
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
            _set_limits(limits)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"sandbox: cannot run {command[0]}: {exc.strerror}\n".encode())
        except BaseException as exc:  # never back into the supervisor's code in the child
            os.write(2, f"sandbox: cannot run {command[0]}: {exc!r}\n".encode())
        finally:
            os._exit(127)
    return pid


def _below() -> dict[int, int]:
    """The processes below this one and their task counts (threads included), from the /proc it sees.

    Nested in another sandbox the supervisor shares that one's PID namespace (see `main`), so the PIDs
    of its /proc are its own; the walk starts from what `/proc/self` is there."""
    children: dict[int, list[int]] = {}
    threads: dict[int, int] = {}
    try:
        root = int(os.readlink("/proc/self"))
        names = os.listdir("/proc")
    except (OSError, ValueError):
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        threads[pid] = int(fields[17])
    below, stack = {}, list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        below[pid] = threads.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return below


def _full(path: str) -> bool:
    try:
        fs = os.statvfs(path)
    except OSError:
        return False
    return fs.f_bavail == 0 or (fs.f_files > 0 and fs.f_favail == 0)


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _reap(child: int, run: _Run) -> None:
    """Reap every exited child — the command's orphans come to PID 1, the supervisor — noting the status
    (and CPU time, its descendants' included) of `child`, stage 2's bwrap."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == child:
            run.status, run.cpu_s = status, usage.ru_utime + usage.ru_stime


def _kill_all(child: int, run: _Run) -> None:
    """SIGKILL every process the command started, until none is left (a zombie still answers a signal, so
    each round reaps). As PID 1 that is every other process of the namespace; nested, everything below."""
    end = time.monotonic() + _QUIESCE_S
    while True:
        if os.getpid() == 1:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
        else:
            left = _below()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
        _reap(child, run)
        if time.monotonic() > end:
            break
        time.sleep(0.002)
    _reap(child, run)


def _become_reaper() -> None:
    """Nested (not PID 1): orphans of the command come back here, to be counted, killed and reaped."""
    import ctypes  # only nested sandboxes pay for it

    set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(set_child_subreaper, 1, 0, 0, 0)


class _Run:
    """What happened to the command, as the supervisor observed it."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.cpu_s = 0.0
        self.killed: str | None = None  # "wall" or "processes"
        self.full: set[str] = set()  # "tmp", "shm", "tree"
        self.kept = 0
        self.dropped = 0

    def keep(self, chunk: bytes, output_bytes: int, out: BinaryIO) -> None:
        room = max(0, output_bytes - self.kept)
        if room and chunk:
            out.write(chunk[:room])
            out.flush()
        self.kept += min(room, len(chunk))
        self.dropped += len(chunk) - min(room, len(chunk))


def _supervise(child: int, read_fd: int, limits: dict[str, Any], out: BinaryIO) -> _Run:
    """Wait for stage 2 while copying its output, watching the limits; then end everything left."""
    run = _Run()
    output_bytes = int(limits.get("output_bytes") or 0) or sys.maxsize
    wall_s = float(limits.get("wall_s") or 0)
    processes = int(limits.get("processes") or 0)
    watched = {name: (limits.get(name) or {}).get("path") for name in ("tmp", "shm")}
    watched["tree"] = (limits.get("tree") or {}).get("root")
    deadline = time.monotonic() + wall_s if wall_s > 0 else None
    pidfd = os.pidfd_open(child)
    reading, next_poll = True, time.monotonic()
    try:
        while run.status is None:
            now = time.monotonic()
            if now >= next_poll:
                _reap(child, run)
                # stage 2's bwrap is below the supervisor too
                if processes and run.status is None and sum(_below().values()) - 1 >= processes:
                    run.killed = "processes"
                    break
                run.full.update(name for name, path in watched.items() if path and _full(path))
                next_poll = now + _POLL_S
            if deadline is not None and now >= deadline:
                run.killed = "wall"
                break
            wait = next_poll - now if deadline is None else min(next_poll, deadline) - now
            ready, _, _ = select.select([read_fd, pidfd] if reading else [pidfd], [], [], max(0.0, wait))
            if read_fd in ready:
                chunk = os.read(read_fd, _CHUNK)
                reading = bool(chunk)
                run.keep(chunk, output_bytes, out)
            if pidfd in ready:
                _reap(child, run)
    finally:
        os.close(pidfd)
    # The command ended, or a limit ends it: nothing it started outlives it, whatever holds its pipe.
    _kill_all(child, run)
    while reading and select.select([read_fd], [], [], 1.0)[0]:
        chunk = os.read(read_fd, _CHUNK)
        reading = bool(chunk)
        run.keep(chunk, output_bytes, out)
    run.full.update(name for name, path in watched.items() if path and _full(path))
    return run


# The copy-back: the overlay's upper directory mirrored onto the host's worktree, never following a
# symlink on either side (every step is relative to a directory descriptor opened with O_NOFOLLOW).

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remove(name: str, parent: int) -> None:
    try:
        info = os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        import shutil  # only a copy-back that deletes a directory needs it

        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def _entries(directory: int) -> list[str]:
    with os.scandir(directory) as entries:
        return sorted(entry.name for entry in entries)


def _copy_file(name: str, source: int, target: int, info: os.stat_result) -> None:
    existing = _lstat(name, target)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        _remove(name, target)
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=target)
        try:
            while os.sendfile(dst, src, None, 1 << 24):
                pass
            os.fchmod(dst, stat.S_IMODE(info.st_mode) & 0o1777)  # no setuid/setgid bits on the host
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _lstat(name: str, parent: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return None


def _copy_back(source: int, target: int, rel: str, keep: frozenset[str]) -> None:
    """Mirror the changes under upper directory `source` onto host directory `target` (both at `rel`)."""
    names = _entries(source)
    try:
        opaque = os.getxattr(source, _OPAQUE) == b"y"
    except OSError:
        opaque = False
    if opaque:  # a directory deleted and made again: what the host has beyond it is gone
        present = set(names)
        for name in _entries(target):
            if name not in present and f"{rel}{name}" not in keep:
                _remove(name, target)
    for name in names:
        path = f"{rel}{name}"
        if path in keep:
            continue
        info = os.lstat(name, dir_fd=source)
        mode = info.st_mode
        if stat.S_ISCHR(mode) and info.st_rdev == _WHITEOUT:
            _remove(name, target)
        elif stat.S_ISDIR(mode):
            existing = _lstat(name, target)
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                _remove(name, target)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=target)
            inner_source = os.open(name, _DIR_FLAGS, dir_fd=source)
            inner_target = os.open(name, _DIR_FLAGS, dir_fd=target)
            try:
                _copy_back(inner_source, inner_target, f"{path}/", keep)
                os.fchmod(inner_target, stat.S_IMODE(mode) & 0o1777)
                os.utime(inner_target, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(inner_source)
                os.close(inner_target)
        elif stat.S_ISREG(mode):
            _copy_file(name, source, target, info)
        elif stat.S_ISLNK(mode):
            _remove(name, target)
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
            os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=target, follow_symlinks=False)
        else:  # a fifo, socket or device cannot leave the sandbox; what it replaced is gone
            _remove(name, target)


def _copy_tree_back(tree: dict[str, Any]) -> str | None:
    """The copy-back of a writable jail; None when it went through, else why not."""
    try:
        source = os.open(os.path.join(tree["root"], "upper"), _DIR_FLAGS)
        try:
            target = os.open(tree["host"], _DIR_FLAGS)
            try:
                _copy_back(source, target, "", frozenset(tree.get("keep") or ()))
            finally:
                os.close(target)
        finally:
            os.close(source)
    except OSError as exc:
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return None


def _reason(run: _Run, limits: dict[str, Any]) -> str | None:
    """The limit the command reached, worded for a person; None if it reached none."""
    if run.killed == "processes":
        return f"process limit {limits.get('processes')} reached"
    if run.killed == "wall":
        return f"killed after {round(float(limits.get('wall_s') or 0), 1):g} s (wall clock)"
    cpu_s = int(limits.get("cpu_s") or 0)
    if (
        cpu_s
        and run.status is not None
        and _status_code(run.status) == 128 + signal.SIGXCPU
        and run.cpu_s >= cpu_s - 1
    ):
        return f"CPU time limit {cpu_s} s reached"
    for name in ("tmp", "shm"):
        if name in run.full:
            where = limits.get(name) or {}
            return f"{where.get('path')} limit {where.get('mb')} MB reached"
    if "tree" in run.full:
        return f"worktree growth limit {(limits.get('tree') or {}).get('mb')} MB reached"
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: supervise.py LIMITS_JSON -- COMMAND [ARG...]\n")
        return 2
    limits = json.loads(argv[1])
    # PID 1 of the sandbox: a signal from inside reaches it only through a handler, and it has none.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    verdict_fd = limits.get("verdict_fd")
    if isinstance(verdict_fd, int):
        os.set_inheritable(verdict_fd, False)  # never reaches stage 2
    out = sys.stdout.buffer
    if os.getpid() != 1:
        _become_reaper()
    processes = int(limits.get("processes") or 0)
    if processes:
        _cap_pids(processes)
    tree = limits.get("tree") or {}
    if tree:
        for part in ("upper", "work"):
            os.makedirs(os.path.join(tree["root"], part), exist_ok=True)
    read_fd, write_fd = os.pipe()
    pid = _start([*(limits.get("inner") or []), *argv[3:]], write_fd, limits)
    os.close(write_fd)
    run = _supervise(pid, read_fd, limits, out)
    notes = []
    copy_error = _copy_tree_back(tree) if tree.get("host") else None
    reason = _reason(run, limits)
    code = 124 if run.killed or run.status is None else _status_code(run.status)
    if run.dropped:
        notes.append(f"output truncated: {run.dropped} more bytes dropped (limit {run.kept} bytes)")
    if reason and not isinstance(verdict_fd, int):  # with a verdict channel, the host says it itself
        notes.append(reason)
    if copy_error:
        notes.append(f"changes not copied back to the worktree: {copy_error}")
        code = code or 1
    for note in notes:
        out.write(f"\n[sandbox] {note}\n".encode())
    out.flush()
    if isinstance(verdict_fd, int):
        try:
            os.write(verdict_fd, (json.dumps({"limit": reason}) + "\n").encode())
        except OSError:  # nobody listens any more: the exit code still tells
            return code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
