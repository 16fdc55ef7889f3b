"""The machine sandboxes run on, behind core's `Host` boundary (`core/host.py`)."""
