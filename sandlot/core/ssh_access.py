"""Who may open an SSH session to a sandbox: its organisation's keys, or its password.

The SSH gateway asks here and nowhere else, so the rules of access live in one place:
the username names the sandbox, the sandbox names the organisation, and only that
organisation's registered keys (or the sandbox's own password) let a caller in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sandlot.core.passwords import verify_password
from sandlot.domain.states import SandboxStatus
from sandlot.errors import InvalidConfigError, InvalidStateError, SshKeyNotFoundError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store import ssh_keys as key_rows
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow, SshKeyRow

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclass(frozen=True)
class SshKey:
    id: str
    name: str
    public_key: str
    fingerprint: str
    created_at: datetime

    @classmethod
    def of(cls, row: SshKeyRow) -> SshKey:
        return cls(row.id, row.name, row.public_key, row.fingerprint, row.created_at)


@dataclass(frozen=True)
class ParsedKey:
    public_key: str
    """`type base64`, without the comment."""
    fingerprint: str


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a key's wire form, as `ssh-keygen -l` shows it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(text: str) -> ParsedKey:
    """Check an OpenSSH public key line (`type base64 [comment]`) and fingerprint it."""
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InvalidConfigError(
            "public_key must be an OpenSSH public key line such as the content of "
            f"~/.ssh/id_ed25519.pub; supported types: {', '.join(sorted(KEY_TYPES))}",
            details={"field": "publicKey"},
        )
    kind, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack_from("!I", blob)
        declared = blob[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        declared = ""
    if declared != kind:
        raise InvalidConfigError(
            f"public_key is not a valid {kind} key: its data does not decode as one",
            details={"field": "publicKey"},
        )
    return ParsedKey(f"{kind} {encoded}", fingerprint(blob))


class SshAccess:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- the organisation's keys --------------------------------------------------------

    def add_key(self, org_id: str, name: str, public_key: str) -> SshKey:
        parsed = parse_public_key(public_key)
        try:
            with self.db.session() as s:
                clash = key_rows.conflicting(s, org_id, name, parsed.fingerprint)
                if clash is not None:
                    raise _conflict(clash, name)
                return SshKey.of(
                    key_rows.add(s, org_id, name, parsed.public_key, parsed.fingerprint)
                )
        except IntegrityError:  # a concurrent add won the race
            raise InvalidStateError(
                f"an SSH key named {name!r} or with this fingerprint was just registered",
                details={"name": name},
            ) from None

    def list_keys(self, org_id: str) -> list[SshKey]:
        with self.db.session() as s:
            return [SshKey.of(r) for r in key_rows.of_org(s, org_id)]

    def delete_key(self, org_id: str, ref: str) -> SshKey:
        """Remove a key by id or name; sessions it opened stay open, new ones are refused."""
        with self.db.session() as s:
            row = key_rows.find(s, org_id, ref)
            if row is None:
                raise SshKeyNotFoundError(
                    f"no SSH key {ref!r} in this organisation; `sandlot ssh-key list` shows them",
                    details={"key": ref},
                )
            key = SshKey.of(row)
            s.delete(row)
            return key

    # ---- logins -------------------------------------------------------------------------

    def owner(self, sandbox_id: str) -> str | None:
        """The organisation of the sandbox a login names; None if it is gone."""
        with self.db.session() as s:
            row = _login_row(s, sandbox_id)
            return row.org_id if row is not None else None

    def key_allowed(self, sandbox_id: str, key_blob: bytes) -> bool:
        """Whether this key (its wire form) is registered to the sandbox's organisation."""
        with self.db.session() as s:
            row = _login_row(s, sandbox_id)
            return row is not None and key_rows.has_fingerprint(
                s, row.org_id, fingerprint(key_blob)
            )

    async def password_allowed(self, sandbox_id: str, password: str) -> bool:
        with self.db.session() as s:
            row = _login_row(s, sandbox_id)
            encoded = row.password_hash if row is not None else None
        if encoded is None:
            return False
        # scrypt takes tens of milliseconds on purpose; other sessions keep running.
        return await asyncio.to_thread(verify_password, password, encoded)


def _login_row(s: Session, sandbox_id: str) -> SandboxRow | None:
    row = sandbox_rows.get(s, sandbox_id)
    if row is None or row.status == SandboxStatus.TERMINATED.value:
        return None
    return row


def _conflict(clash: SshKeyRow, name: str) -> InvalidStateError:
    if clash.name == name:
        return InvalidStateError(
            f"an SSH key named {name!r} exists already; remove it first or pick another name",
            details={"name": name, "keyId": clash.id},
        )
    return InvalidStateError(
        f"this public key is registered already, as {clash.name!r}",
        details={"name": clash.name, "keyId": clash.id},
    )
