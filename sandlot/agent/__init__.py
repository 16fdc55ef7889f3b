"""The in-sandbox agent: PID 1 of every sandbox, serving exec and file operations.

Standard library only, relative imports only: inside a sandbox this directory is mounted
read-only as `/.sandlot/agent` and started by the Python of the agent layer as
`python3 -E -s -S -B -m agent` (see runtime/bundle.py), on the host
as `python -m sandlot.agent`. Importing this package must stay cheap (the host imports it
to find the directory); the server modules load only when the agent runs.
"""

__version__ = "0.1.0"
