"""SSH access rules against a real SQLite store: keys, fingerprints, passwords."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandlot.core.passwords import hash_password, verify_password
from sandlot.core.ssh_access import SshAccess, parse_public_key
from sandlot.errors import InvalidConfigError, InvalidStateError, SshKeyNotFoundError
from sandlot.store import keys
from sandlot.store.database import Database, migrate
from sandlot.store.tables import SandboxRow

needs_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None,
    reason="needs ssh-keygen (openssh-client, installed by scripts/setup)",
)


def keygen(directory: Path, name: str) -> tuple[str, str]:
    """A fresh public key line and the fingerprint ssh-keygen gives it."""
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True
    )
    return (directory / f"{name}.pub").read_text(), listed.stdout.split()[1]


@pytest.fixture
def access(tmp_path: Path) -> SshAccess:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(db.engine)
    return SshAccess(db)


def add_sandbox(access: SshAccess, org_name: str, sandbox_id: str, password: str | None) -> str:
    with access.db.session() as s:
        org = keys.create_org(s, org_name)
        s.add(
            SandboxRow(
                id=sandbox_id, org_id=org.id, template="base", template_digest="d", rootfs="/",
                status="running", vcpus=1, memory_mb=512, disk_mb=1024, env={}, meta={},
                idle_timeout=600, created_at=datetime.now(UTC),
                password_hash=hash_password(password) if password else None,
            )
        )  # fmt: skip
        return org.id


def test_password_hashes_are_salted_and_verify() -> None:
    first, second = hash_password("mypass123"), hash_password("mypass123")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("mypass123", first) and verify_password("mypass123", second)
    assert not verify_password("mypass124", first)
    assert not verify_password("mypass123", "not-a-hash")


@needs_keygen
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    line, fingerprint = keygen(tmp_path, "k")
    parsed = parse_public_key(line)
    assert parsed.fingerprint == fingerprint
    assert parsed.public_key == " ".join(line.split()[:2])  # the comment is dropped


@pytest.mark.parametrize(
    "bad",
    ["", "not a key", "ssh-ed25519", "ssh-ed25519 !!!notbase64", "ssh-rsa AAAAC3NzaC1lZDI1NTE5"],
)
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidConfigError):
        parse_public_key(bad)


@needs_keygen
def test_keys_open_only_their_organisations_sandboxes(access: SshAccess, tmp_path: Path) -> None:
    ours = add_sandbox(access, "ours", "sbx-ours000001", None)
    theirs = add_sandbox(access, "theirs", "sbx-theirs0001", "their-password")
    line, _ = keygen(tmp_path, "laptop")
    added = access.add_key(ours, "laptop", line)
    wire = base64.b64decode(line.split()[1])
    assert access.key_allowed("sbx-ours000001", wire)
    assert not access.key_allowed("sbx-theirs0001", wire)
    assert not access.key_allowed("sbx-missing001", wire)
    assert access.owner("sbx-ours000001") == ours and access.owner("sbx-theirs0001") == theirs

    with pytest.raises(InvalidStateError, match="exists already"):
        access.add_key(ours, "laptop", keygen(tmp_path, "other")[0])
    with pytest.raises(InvalidStateError, match="registered already"):
        access.add_key(ours, "again", line)
    access.add_key(theirs, "laptop", line)  # another organisation may register it too
    assert [k.id for k in access.list_keys(ours)] == [added.id]

    assert access.delete_key(ours, "laptop").id == added.id
    assert not access.key_allowed("sbx-ours000001", wire)
    with pytest.raises(SshKeyNotFoundError):
        access.delete_key(ours, "laptop")


def test_password_logins(access: SshAccess) -> None:
    add_sandbox(access, "a", "sbx-withpass01", "mypass123")
    add_sandbox(access, "b", "sbx-nopasswd01", None)
    assert asyncio.run(access.password_allowed("sbx-withpass01", "mypass123"))
    assert not asyncio.run(access.password_allowed("sbx-withpass01", "wrong-pass"))
    assert not asyncio.run(access.password_allowed("sbx-nopasswd01", "mypass123"))
    with access.db.session() as s:
        row = s.get(SandboxRow, "sbx-withpass01")
        assert row is not None
        row.status = "terminated"
    assert not asyncio.run(access.password_allowed("sbx-withpass01", "mypass123"))
    assert access.owner("sbx-withpass01") is None
