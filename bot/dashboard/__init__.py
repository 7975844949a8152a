"""The read-only web dashboard: incidents, runs, action records and spend on pages of their own,
served by the bot on a port of its own and signed in to from chat with `/dashboard`."""
