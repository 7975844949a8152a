"""The agent and its workspace: the coding agent behind a small interface (`code_agent`: the bundled
Claude Code CLI under the guard), the git worktree it edits (`workspace`), the files a run claims
(`claims`), and the verify gate that runs the checks and the smoke load on exactly a commit's tree in the
sandbox (`verify`).
"""
