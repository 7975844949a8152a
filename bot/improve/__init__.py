"""The improve pipeline: running the coding agent on a worktree under a deterministic guard."""
