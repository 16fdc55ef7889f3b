"""The SDK's models and the server's OpenAPI document describe the same fields.

Each value the SDK hands back is a hand-written pydantic model of one schema of the
API; this keeps the two from drifting: every model has exactly its schema's fields (by
their camelCase names), and every response schema is either mirrored by a model or
named below with why it is not.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import BaseModel

from sandlot.api.app import create_app
from sandlot.sdk import _admin, _lifecycle, _network, _ssh, _templates
from sandlot.sdk import _models as m

MIRRORS: dict[type[BaseModel], str] = {
    _admin.Quotas: "QuotasIn",
    _admin.OrgInfo: "OrgOut",
    _admin.KeyInfo: "KeyOut",
    _admin.NewKey: "NewKeyOut",
    _lifecycle.SnapshotInfo: "SnapshotOut",
    _lifecycle.PatchInfo: "PatchOut",
    m.Resources: "ResourcesOut",
    m.SandboxInfo: "SandboxOut",
    m.MountInfo: "MountOut",
    m.VolumeInfo: "VolumeOut",
    m.CommandResult: "ExecOut",
    m.ProcessInfo: "ProcessOut",
    m.EntryInfo: "EntryOut",
    m.SandboxUsage: "UsageOut",
    m.Metrics: "MetricsOut",
    m.SandboxUsageRecord: "SandboxUsageOut",
    m.UsageTotals: "UsageTotalsOut",
    m.Usage: "UsageReportOut",
    m.ServerHealth: "HealthOut",
    m.RuntimeInfo: "RuntimeOut",
    _network.Port: "PortOut",
    _ssh.SshKeyInfo: "SshKeyOut",
    _ssh.SshInfo: "SshInfoOut",
    _templates.TemplateInfo: "TemplateOut",
    _templates.BuildInfo: "BuildOut",
}
NOT_MIRRORED = {
    "ErrorBody": "raised as the matching `sandlot.errors` class instead",
    "ErrorEnvelope": "the error's envelope",
    "Pagination": "the SDK's list takes `limit` and `offset` and returns the page's items",
    "SandboxList": "a page of SandboxOut, returned as a list of SandboxInfo",
    "RemovedOut": "the SDK returns nothing for a removal",
    "ReplaceOut": "the SDK returns the number of replacements",
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    app = create_app(cast(Any, None), cast(Any, None))  # only its routes are read
    found: dict[str, Any] = app.openapi()["components"]["schemas"]
    return found


@pytest.mark.parametrize("model", list(MIRRORS), ids=lambda model: model.__name__)
def test_each_model_has_exactly_its_schemas_fields(
    model: type[BaseModel], schemas: dict[str, Any]
) -> None:
    sdk = {field.alias or name for name, field in model.model_fields.items()}
    api = set(schemas[MIRRORS[model]]["properties"])
    assert sdk == api, f"SDK only: {sorted(sdk - api)}; API only: {sorted(api - sdk)}"


def test_every_response_schema_is_mirrored_or_said_why_not(schemas: dict[str, Any]) -> None:
    responses = {name for name in schemas if name.endswith("Out") or name in NOT_MIRRORED}
    accounted = set(MIRRORS.values()) | set(NOT_MIRRORED)
    assert responses - accounted == set(), "a response schema no SDK model mirrors"
    assert set(NOT_MIRRORED) <= set(schemas), "a schema named here is gone"
