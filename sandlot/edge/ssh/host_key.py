"""The gateway's host key: made once, then the same across restarts.

Clients pin it in known_hosts on first use; a new key on every start would teach
users to ignore the warning that protects them.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

HOST_KEY_FILE = "ssh_host_ed25519_key"


def load_or_create(data_dir: Path) -> asyncssh.SSHKey:
    path = data_dir / HOST_KEY_FILE
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="sandlot gateway")
    staged = path.with_name(path.name + ".new")
    # Created 0600 rather than chmod-ed after a window in which others could read it.
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    os.replace(staged, path)
    return key
