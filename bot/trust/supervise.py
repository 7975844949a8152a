"""The first process inside the sandbox: resource limits, a wall clock and bounded output, then the command.

`bot.trust.sandbox` runs it as `python -I -S supervise.py '<limits json>' -- argv…` inside bubblewrap, bound
read-only from the live checkout (the worktree's copy is never the one that runs). It uses the standard
library only (`-S`: no site-packages, `-I`: no environment, no user site), sets the rlimits, starts the
command with stdout and stderr on one pipe, copies at most `output_bytes` of it to its own stdout and
drops the rest (counting it), kills the command at `wall_s`, and exits with its status (128 + signal
number when a signal ended it, 124 on the wall clock, 127 when it could not start). When it exits, so does
bubblewrap's init, and the kernel ends everything left in the sandbox's PID namespace.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time

__all__ = ["main"]

_CHUNK = 65536
_LIMITS = {
    "memory_bytes": (resource.RLIMIT_AS,),
    "cpu_s": (resource.RLIMIT_CPU,),
    "file_size_bytes": (resource.RLIMIT_FSIZE,),
    "open_files": (resource.RLIMIT_NOFILE,),
}


def _set_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key, (which,) in _LIMITS.items():
        value = int(limits.get(key) or 0)
        if value > 0:
            _, hard = resource.getrlimit(which)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (capped, capped))


def _start(command: list[str], write_fd: int) -> int:
    pid = os.fork()
    if pid == 0:  # the child: one pipe for both streams, then the command
        try:
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"sandbox: cannot run {command[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    return pid


def _status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: supervise.py LIMITS_JSON -- COMMAND [ARG...]\n")
        return 2
    limits = json.loads(argv[1])
    command = argv[3:]
    output_bytes = int(limits.get("output_bytes") or 0) or sys.maxsize
    wall_s = float(limits.get("wall_s") or 0)
    _set_limits(limits)
    read_fd, write_fd = os.pipe()
    pid = _start(command, write_fd)
    os.close(write_fd)
    out = sys.stdout.buffer
    deadline = time.monotonic() + wall_s if wall_s > 0 else None
    kept = dropped = 0
    timed_out = False
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([read_fd], [], [], wait)
        if not ready:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read_fd, _CHUNK)
        if not chunk:
            break
        room = max(0, output_bytes - kept)
        if room:
            out.write(chunk[:room])
            out.flush()
        kept += min(room, len(chunk))
        dropped += len(chunk) - min(room, len(chunk))
    _, status = os.waitpid(pid, 0)
    code = _status(status)
    notes = []
    if dropped:
        notes.append(f"output truncated: {dropped} more bytes dropped (limit {output_bytes} bytes)")
    if timed_out:
        code = 124
        notes.append(f"killed after {wall_s:g} s (the sandbox's time limit)")
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        notes.append(f"killed: CPU time limit of {limits.get('cpu_s')} s")
    for note in notes:
        out.write(f"\n[sandbox] {note}\n".encode())
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
