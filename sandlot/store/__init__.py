"""Persistent state: organisations, keys and sandboxes (never sandbox file contents)."""
