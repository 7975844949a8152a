"""mendbot tests."""
