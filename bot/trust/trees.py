"""Trees the agent touched, handled as data: committed from bytes, checked, and materialised from blobs.

A worktree the coding agent worked in — and any branch made from one, here, on a worker or on the
forge — is hostile data. Nothing in it may name a program that runs outside the sandbox, change how
the bot's own tools behave, or reach past the tree, so git never reads it the way a checkout would:

- **Commit** (`commit_worktree`): the files `git add -A` would take (the tracked ones and the untracked
  ones .gitignore does not exclude) are read by Python with `lstat`, never followed, and hashed with
  `hash-object --no-filters`; the tree is written from a private index (`update-index --index-info`,
  `write-tree`) and committed with `commit-tree` and `update-ref`. No attribute is consulted, no
  filter runs, and git never looks inside another repository.
- **Refuse** what cannot be made inert, before anything is committed (`HostileTree`): an embedded
  repository (a `.git` anywhere but the worktree's own pointer), a gitlink, a symlink whose target
  leaves the tree or names a secret path (`.env`, `data/`, keys, git's own files), a fifo, socket or
  device, a path git would not accept. `check_change` checks a committed change the same way, for
  heads made elsewhere (a worker, a hand commit, the forge), and lists the symlinks it keeps so the
  proposal can show them as symlinks with their targets.
- **Materialise** (`materialise`): a fresh copy of exactly a commit's tree, written from its blobs
  (`ls-tree` and `cat-file --batch`): no ignored or untracked file of any worktree, no filter, no
  `export-ignore`, with the bytecode of its Python files beside them (`mendbot.trust.bytecode`). Checks,
  proofs and replays run on such copies (`Workspace.checkout`).
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import msgspec

from mendbot.kernel.git import GitError, git
from mendbot.trust import bytecode
from mendbot.trust.path_rules import secret_reason

__all__ = [
    "HostileTree",
    "Symlink",
    "check_change",
    "commit_worktree",
    "materialise",
    "overlay_tree",
    "symlink_problem",
]

_GIT_TIMEOUT_S = 120.0
_REGULAR, _EXECUTABLE, _SYMLINK, _GITLINK = "100644", "100755", "120000", "160000"
_FILES = (_REGULAR, _EXECUTABLE)
_SHOWN_PROBLEMS = 5


class HostileTree(Exception):
    """A tree carries what cannot be made inert; `problems` say what and where (already short)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = f" (+{len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
        super().__init__(f"the change carries what mendbot will not commit or run: {shown}{more}")


class Symlink(msgspec.Struct, frozen=True):
    """A symlink a change adds or changes: shown as such in the proposal, never as a one-line file."""

    path: str
    target: str

    def shown(self) -> str:
        return f"`{self.path}` → `{self.target}`"


def path_problem(rel: str) -> str | None:
    """Why git must not be given `rel` as a path of a tree (git itself refuses these in an index)."""
    if not rel or rel.startswith("/") or "\n" in rel or "\0" in rel:
        return f"a path git cannot take: {rel!r}"
    for part in rel.split("/"):
        if part in ("", ".", "..") or part.casefold() == ".git":
            return f"a path git cannot take: {rel!r}"
    return None


def symlink_problem(rel: str, target: str) -> str | None:
    """Why a symlink at `rel` pointing at `target` may not be part of a change, or None."""
    if not target or "\0" in target:
        return f"a symlink with an empty or invalid target at `{rel}`"
    if target.startswith("/"):
        return f"a symlink leaving the tree: `{rel}` → `{target}`"
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        return f"a symlink leaving the tree: `{rel}` → `{target}`"
    parts = PurePosixPath(resolved).parts
    if parts and parts[0].casefold() == ".git":
        return f"a symlink into git's own files: `{rel}` → `{target}`"
    if (why := secret_reason(resolved)) is not None:
        return f"a symlink to a secret path: `{rel}` → `{target}` ({why})"
    return None


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _unwanted_entries(root: Path) -> list[str]:
    """Every `.git` in the worktree but its own pointer at the top (each is another repository), and
    every fifo, socket or device (git would skip them silently; sandboxed code made them)."""
    found: list[str] = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(directory, root)
        for name in (*dirs, *files):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if name.casefold() == ".git":
                if rel_dir != ".":
                    found.append(f"an embedded repository at `{rel}`")
                continue
            mode = os.lstat(os.path.join(directory, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                found.append(f"{_file_type(mode)} at `{rel}`")
        dirs[:] = [name for name in dirs if name.casefold() != ".git"]
    return found


def _entries(listing: str) -> dict[str, tuple[str, str]]:
    """`ls-tree -r -z` output as {path: (mode, object id)}."""
    entries: dict[str, tuple[str, str]] = {}
    for record in listing.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _, rest = meta.partition(" ")
        oid = rest.partition(" ")[2]
        entries[path] = (mode, oid)
    return entries


async def _tree(repo: Path, treeish: str) -> dict[str, tuple[str, str]]:
    listing = await git(repo, "ls-tree", "-r", "-z", "--full-tree", treeish, timeout_s=_GIT_TIMEOUT_S)
    return _entries(listing.output)


async def _hash_files(repo: Path, paths: list[Path]) -> list[str]:
    if not paths:
        return []
    listed = "".join(f"{path}\n" for path in paths).encode()
    result = await git(
        repo, "hash-object", "-w", "--no-filters", "--stdin-paths", input=listed, timeout_s=_GIT_TIMEOUT_S
    )
    ids = result.output.split()
    if len(ids) != len(paths):
        raise GitError(f"git hash-object returned {len(ids)} ids for {len(paths)} files in {repo}")
    return ids


async def _hash_bytes(repo: Path, content: bytes) -> str:
    result = await git(repo, "hash-object", "-w", "--no-filters", "--stdin", input=content)
    return result.output.strip()


async def _write_tree(repo: Path, entries: dict[str, tuple[str, str]]) -> str:
    """A tree of exactly `entries`, through a private index."""
    with tempfile.TemporaryDirectory(prefix="mendbot-index-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        lines = "".join(f"{mode} {oid}\t{path}\0" for path, (mode, oid) in sorted(entries.items()))
        if lines:
            await git(repo, "update-index", "--add", "-z", "--index-info", env=index, input=lines.encode())
        result = await git(repo, "write-tree", env=index)
    return result.output.strip()


class _Scan(msgspec.Struct):
    """What a worktree holds, read with lstat: what to hash, and what cannot be committed."""

    kept: dict[str, tuple[str, str]]  # gitlinks main already has, kept as they are
    regular: list[tuple[str, str]]  # (path, mode)
    links: list[tuple[str, str]]  # (path, target)
    problems: list[str]


def _scan(root: Path, tracked: dict[str, tuple[str, str]], others: list[str]) -> _Scan:
    scan = _Scan({}, [], [], _unwanted_entries(root))
    candidates: set[str] = set(tracked)
    for name in others:
        if name.endswith("/"):  # git shows a directory holding its own repository this way
            problem = f"an embedded repository at `{name.rstrip('/')}`"
            if problem not in scan.problems:
                scan.problems.append(problem)
        else:
            candidates.add(name)
    for rel in sorted(candidates):
        mode, oid = tracked.get(rel, ("", ""))
        if mode == _GITLINK:  # a submodule main already has: kept as main has it, never entered
            scan.kept[rel] = (mode, oid)
            continue
        if (why := path_problem(rel)) is not None:
            scan.problems.append(why)
            continue
        try:
            info = os.lstat(root / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue  # deleted
        if stat.S_ISREG(info.st_mode):
            scan.regular.append((rel, _EXECUTABLE if info.st_mode & stat.S_IXUSR else _REGULAR))
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(root / rel)
            if (why := symlink_problem(rel, target)) is not None:
                scan.problems.append(why)
            scan.links.append((rel, target))
        elif not stat.S_ISDIR(info.st_mode):  # a directory: what it holds is listed as untracked
            scan.problems.append(f"{_file_type(info.st_mode)} at `{rel}`")
    return scan


async def commit_worktree(
    worktree: Path, message: str, *, identity: Mapping[str, str] | None = None
) -> str | None:
    """Commit what `git add -A` would in `worktree` (absolute), read as data (module docstring).

    The new HEAD sha, or None when the tree is HEAD's; HostileTree when it holds what cannot be inert.
    `identity` is the committer's environment (GIT_AUTHOR_NAME…), else the bot's own.
    """
    root = worktree
    head = (await git(root, "rev-parse", "--verify", "HEAD^{commit}")).output.strip()
    tracked = await _tree(root, head)
    others = await git(root, "ls-files", "--others", "--exclude-standard", "-z", timeout_s=_GIT_TIMEOUT_S)
    scan = await asyncio.to_thread(_scan, root, tracked, [name for name in others.output.split("\0") if name])
    if scan.problems:
        raise HostileTree(scan.problems)
    entries = dict(scan.kept)
    regular, links = scan.regular, scan.links
    ids = await _hash_files(root, [root / rel for rel, _ in regular])
    for (rel, mode), oid in zip(regular, ids, strict=True):
        entries[rel] = (mode, oid)
    for rel, target in links:
        entries[rel] = (_SYMLINK, await _hash_bytes(root, os.fsencode(target)))
    tree = await _write_tree(root, entries)
    if tree == (await git(root, "rev-parse", f"{head}^{{tree}}")).output.strip():
        return None
    body = message.strip() + "\n"
    commit = await git(root, "commit-tree", tree, "-p", head, "-F", "-", input=body.encode(), env=identity)
    sha = commit.output.strip()
    await git(root, "update-ref", "-m", "mendbot: commit the run's change", "HEAD", sha, head)
    await git(root, "read-tree", sha)  # the index follows HEAD; no file is read or written
    return sha


async def _blobs(repo: Path, ids: list[str]) -> dict[str, bytes]:
    """The content of each blob, through one `cat-file --batch`."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    result = await git(
        repo,
        "cat-file",
        "--batch",
        input="".join(f"{oid}\n" for oid in unique).encode(),
        binary=True,
        timeout_s=_GIT_TIMEOUT_S,
    )
    data, at, found = result.data, 0, {}
    while at < len(data):
        end = data.index(b"\n", at)
        header = data[at:end].split()
        if len(header) != 3:
            raise GitError(f"git cat-file cannot read {header[0].decode(errors='replace')} in {repo}")
        size = int(header[2])
        found[header[0].decode()] = data[end + 1 : end + 1 + size]
        at = end + 1 + size + 1
    return found


async def check_change(repo: Path, base: str, head: str) -> list[Symlink]:
    """The symlinks the committed change `base..head` adds or changes; HostileTree if it adds a gitlink,
    a path git cannot take, or a symlink leaving the tree or naming a secret path."""
    result = await git(repo, "diff-tree", "-r", "-z", "--no-renames", base, head, timeout_s=_GIT_TIMEOUT_S)
    fields = result.output.split("\0")
    problems: list[str] = []
    linked: list[tuple[str, str]] = []
    for meta, rel in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.lstrip(":").split()
        if len(parts) < 5 or parts[4].startswith("D"):
            continue
        mode, oid = parts[1], parts[3]
        if (why := path_problem(rel)) is not None:
            problems.append(why)
        elif mode == _GITLINK:
            problems.append(f"a gitlink (another repository) at `{rel}`")
        elif mode == _SYMLINK:
            linked.append((rel, oid))
    targets = await _blobs(repo, [oid for _, oid in linked])
    symlinks = [Symlink(rel, os.fsdecode(targets.get(oid, b""))) for rel, oid in linked]
    problems += [why for link in symlinks if (why := symlink_problem(link.path, link.target)) is not None]
    if problems:
        raise HostileTree(problems)
    return symlinks


async def overlay_tree(repo: Path, base: str, source: str, paths: list[str]) -> str:
    """A tree: `base`'s, with `paths` as they are in `source` (absent there: removed)."""
    wanted = set(paths)
    entries = {rel: entry for rel, entry in (await _tree(repo, source)).items() if rel in wanted}
    with tempfile.TemporaryDirectory(prefix="mendbot-index-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        await git(repo, "read-tree", base, env=index)
        gone = sorted(wanted - set(entries))
        if gone:
            await git(
                repo,
                "update-index",
                "--force-remove",
                "-z",
                "--stdin",
                env=index,
                input="".join(f"{rel}\0" for rel in gone).encode(),
            )
        lines = "".join(f"{mode} {oid}\t{rel}\0" for rel, (mode, oid) in sorted(entries.items()))
        if lines:
            await git(repo, "update-index", "--add", "-z", "--index-info", env=index, input=lines.encode())
        result = await git(repo, "write-tree", env=index)
    return result.output.strip()


async def materialise(repo: Path, treeish: str, dest: Path) -> None:
    """Write exactly `treeish`'s files into the empty directory `dest` (module docstring): regular files
    with their executable bit, symlinks as symlinks (written last, so nothing is written through one),
    a gitlink as an empty directory. HostileTree if a path is one git would not take."""
    entries = await _tree(repo, treeish)
    problems = [why for rel in entries if (why := path_problem(rel)) is not None]
    if problems:
        raise HostileTree(problems)
    blobs = await _blobs(repo, [oid for mode, oid in entries.values() if mode != _GITLINK])
    await asyncio.to_thread(_write_files, dest, entries, blobs)
    python = [(rel, oid) for rel, (mode, oid) in entries.items() if mode in _FILES and rel.endswith(".py")]
    await bytecode.place(dest, python)


def _write_files(dest: Path, entries: dict[str, tuple[str, str]], blobs: dict[str, bytes]) -> None:
    links: list[tuple[Path, bytes]] = []
    for rel, (mode, oid) in sorted(entries.items()):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == _GITLINK:
            target.mkdir(exist_ok=True)
        elif mode == _SYMLINK:
            links.append((target, blobs[oid]))
        else:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blobs[oid])
            if mode == _EXECUTABLE:
                os.chmod(target, 0o755)
    for target, content in links:
        os.symlink(os.fsdecode(content), target)
