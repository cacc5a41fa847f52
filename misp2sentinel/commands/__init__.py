"""The work behind each command, kept apart from option parsing so tests can call it directly."""
