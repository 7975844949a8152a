"""Shipping a proposal (DESIGN §7): approval in chat, merge, reload or restart, watch, rollback."""
