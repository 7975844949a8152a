"""mendbot's core: services the cogs, the playground and the tests call with plain values."""
