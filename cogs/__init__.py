"""mendbot's discord.py extensions. Every module here is discovered and loaded at start-up."""
