"""`python -m tests.harness.in_tmpfs COMMAND…`: run COMMAND (the suite) with `/tmp` a tmpfs of its own where
the machine allows one, else as it is.

The suite makes and deletes hundreds of thousands of files in `/tmp`: repositories, worktrees, data
directories, databases. On a disk file system the kernel's work for them is a large part of a run: on
ext4 here, finding a free inode for each new file (`find_inode_bit`, `recently_deleted`) took about a
tenth of the machine's CPU, and the end-to-end tests ran in 189 s on the disk and 148 s on a tmpfs.

The tmpfs is mounted in a mount namespace of the run's own (`unshare --mount`, which needs root or its
capability): nothing outside the run sees it, and it is gone when the run ends, however it ends. Where
that cannot be (not root, no `unshare`, a container that refuses it, less than 16 GiB of memory, or
`MENDBOT_TEST_TMPFS=0`), the command runs as it is, saying so in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# Mounted over /tmp inside the namespace; on failure the command runs on the disk all the same.
_MOUNT_THEN_RUN = (
    "if ! mount -t tmpfs -o mode=1777 mendbot-tests /tmp; then "
    'echo "tests: /tmp could not be a tmpfs: temporary files on the disk" >&2; fi; exec "$@"'
)


# A tmpfs holds its files in memory, and may take half of it: a whole run's files took up to 6 GiB here.
_LEAST_MEMORY_GIB = 16


def _memory_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def why_not() -> str | None:
    """Why this run's /tmp cannot be a tmpfs of its own, or None when it can."""
    if os.environ.get("MENDBOT_TEST_TMPFS") == "0":
        return "MENDBOT_TEST_TMPFS=0"
    if (memory := _memory_gib()) < _LEAST_MEMORY_GIB:
        return f"{memory:.0f} GiB of memory, fewer than the {_LEAST_MEMORY_GIB} GiB it would take"
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("unshare") is None:
        return "no unshare"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "unshare --mount refused"
    return None


def main(command: list[str]) -> int:
    if not command:
        sys.stderr.write("usage: python -m tests.harness.in_tmpfs COMMAND [ARG…]\n")
        return 2
    reason = why_not()
    if reason is not None:
        sys.stderr.write(f"tests: temporary files on the disk ({reason})\n")
        os.execvp(command[0], command)
    unshared = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_THEN_RUN, "sh"]
    os.execvp("unshare", [*unshared, *command])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
