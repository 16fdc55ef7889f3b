"""Reading sandbox rows for the parts of core, and the column writes that are not
transitions (those go through `transitions.py`): one place that turns a row another
organisation owns into SANDBOX_NOT_FOUND, so no part can forget to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandlot.core.catalog import Catalog
from sandlot.core.models import SandboxPage, SandboxView
from sandlot.domain.states import SandboxStatus
from sandlot.errors import SandboxNotFoundError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.templates.store import Template


@dataclass(eq=False)
class Records:
    db: Database
    catalog: Catalog

    def get(self, org_id: str | None, sandbox_id: str) -> SandboxView:
        """The sandbox as stored; `org_id` None is the server itself (any owner)."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id, org_id)
            if row is None:
                raise SandboxNotFoundError(
                    f"sandbox {sandbox_id} does not exist (or belongs to another organisation)",
                    details={"sandboxId": sandbox_id},
                )
            return SandboxView.of(row)

    def page(
        self,
        org_id: str,
        *,
        status: SandboxStatus | None = None,
        metadata: dict[str, str] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> SandboxPage:
        with self.db.session() as s:
            rows, total = sandbox_rows.page(
                s,
                org_id,
                status=status.value if status else None,
                metadata=metadata or {},
                limit=limit,
                offset=offset,
            )
            return SandboxPage([SandboxView.of(r) for r in rows], total, limit, offset)

    def live(self) -> list[SandboxView]:
        """Every sandbox not yet ended, whoever owns it."""
        with self.db.session() as s:
            return [SandboxView.of(r) for r in sandbox_rows.live(s)]

    def stack(self, sandbox_id: str) -> tuple[Template, str | None]:
        """The template version the sandbox runs on (kept even if rebuilt since), and
        the host CPUs it was given."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            assert row is not None
            return self.catalog.stack_of(row), row.cpus

    def record(self, sandbox_id: str, **changes: Any) -> None:
        """Columns that change without a transition."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            if row is not None:
                for column, value in changes.items():
                    setattr(row, column, value)

    def address(self, sandbox_id: str) -> str | None:
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            return row.address if row is not None else None
