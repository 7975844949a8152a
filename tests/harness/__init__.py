"""Test harness: doubles of the model API and helpers to run the Claude Code CLI against them."""
