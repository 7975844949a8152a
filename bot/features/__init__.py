"""Small features of the chat bot: dice, reminders, dev mode."""
