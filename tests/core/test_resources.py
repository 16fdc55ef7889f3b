from __future__ import annotations

import re

import pytest

from sandlot.domain.ids import SANDBOX_ID_PATTERN, new_sandbox_id
from sandlot.domain.resources import check_range, parse_size_mb


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("4GB", 4096),
        ("4GiB", 4096),
        ("512MB", 512),
        ("512M", 512),
        ("512", 512),
        ("1.5g", 1536),
        ("2048KB", 2),
        (" 1 TB ", 1024 * 1024),
    ],
)
def test_parse_size(text: str, mb: int) -> None:
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("text", ["", "GB", "4XB", "-1GB", "four"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size_mb(text)


def test_check_range_message_names_field_and_bounds() -> None:
    assert check_range("memory", 128, 128, 1024) == 128
    with pytest.raises(
        ValueError, match=r"memory must be between 128 MiB and 1024 MiB, got 64 MiB"
    ):
        check_range("memory", 64, 128, 1024, " MiB")


def test_ids_are_dns_labels_and_distinct() -> None:
    ids = {new_sandbox_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.match(SANDBOX_ID_PATTERN, i) and len(i) <= 63 for i in ids)
