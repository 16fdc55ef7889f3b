"""Which templates an organisation sees, and what a recorded sandbox stands on.

An organisation sees its own templates and the built-in ones (`templates/store.py`
keeps the names apart). A sandbox or snapshot records its template's name, digest and
layer stack; the stack it is made again from is that record, with the template's start
settings while that version is still on disk, and the agent layer on top.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sandlot.errors import TemplateNotFoundError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow, SnapshotRow
from sandlot.templates.agent_layer import is_agent_layer
from sandlot.templates.store import Template, TemplateStore, layers_of


class Catalog:
    def __init__(self, db: Database, templates: TemplateStore, uid_offset: int) -> None:
        self.db = db
        self.templates = templates
        self._uid_offset = uid_offset

    def agent_layer(self) -> Path:
        """The top layer of every sandbox: the agent's own Python."""
        return self.templates.agent_layer(self._uid_offset)

    def listed(self, org_id: str | None) -> list[Template]:
        return [t for t in self.templates.list() if t.visible_to(org_id)]

    def visible(self, org_id: str | None, name: str) -> Template:
        """A template the organisation may start from: its own of that name, else the
        built-in one."""
        template = self.templates.get(name, org_id)
        if not template.visible_to(org_id):
            raise TemplateNotFoundError(
                f"template {name!r} does not exist; `sandlot template list` shows the "
                "available ones",
                details={"template": name},
            )
        return template

    def stack_of(self, row: SandboxRow | SnapshotRow) -> Template:
        """The stack a sandbox or snapshot stands on (see `with_agent`), with its
        template's start settings while that version is on disk."""
        org_id, name, digest = row.org_id, row.template, row.template_digest
        layers = layers_of(row.rootfs)
        if not layers or not is_agent_layer(layers[0]):  # recorded before the agent layer
            layers = (self.agent_layer(), *layers)
        version = self.templates.version(name, digest, org_id)
        if version is not None and version.layers == layers[1:]:
            return dataclasses.replace(version, layers=layers)
        return Template(name, digest, layers)

    def users(self, template: Template) -> list[str]:
        """Live sandboxes and snapshots made from any version of `template` (an
        organisation's own template is only ever its own sandboxes')."""
        with self.db.session() as s:
            return sandbox_rows.template_users(s, template.name, template.owner)

    def layers_in_use(self) -> set[Path]:
        """Every layer a live sandbox or a snapshot stands on."""
        with self.db.session() as s:
            return {p for lowerdir in sandbox_rows.lowerdirs(s) for p in layers_of(lowerdir)}
