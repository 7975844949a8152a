"""The kernel every layer may use: settings, logging, the one error path, subprocesses, the bot's git,
failpoints, prompts and daemons."""
