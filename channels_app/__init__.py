"""Channels (upstream accounts) and their key pools."""
