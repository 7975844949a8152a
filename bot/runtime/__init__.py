"""The runtime that assembles the layers below into a running process: the bot, its services, start-up,
health, metrics, and the worker process."""
