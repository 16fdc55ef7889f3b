"""What an image import may cost, and the error for an archive that breaks the rules.

Image archives come from users, so everything in them is untrusted: the sizes a tar
declares, how many members it has, how many layers the manifest lists. The limits are
counted over the whole image, not per layer, so splitting a tar bomb across layers
gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


class ImportRejected(ValueError):
    """The archive is malformed or unsafe.

    str() is a message a person can act on, naming the member at fault.
    """


@dataclass(frozen=True)
class ImportLimits:
    max_total_bytes: int = 16 * 2**30
    """Sum of the declared sizes of every member of every layer."""
    max_entries: int = 1_000_000
    """Members over all layers."""
    max_layers: int = 64

    @property
    def max_stream_bytes(self) -> int:
        """Bytes of uncompressed tar an import reads at most, headers and padding included.

        Declared sizes bound the file data; this bounds what they do not (headers,
        padding, bytes after the end-of-archive marker), so a small compressed blob can
        never make the importer read and hash without end.
        """
        return self.max_total_bytes + self.max_entries * 2048 + 2**20


class ImportBudget:
    """Running totals for one import, checked as each member and layer is met."""

    def __init__(self, limits: ImportLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.declared_bytes = 0
        self.stream_bytes = 0

    def add_member(self, layer: str, member: str, size: int) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ImportRejected(
                f"{layer}: member {member!r} is past the limit of "
                f"{self.limits.max_entries} members over all layers"
            )
        self.declared_bytes += max(size, 0)
        if self.declared_bytes > self.limits.max_total_bytes:
            raise ImportRejected(
                f"{layer}: member {member!r} ({size} bytes) takes the image past the limit "
                f"of {self.limits.max_total_bytes} bytes of content (a tar bomb, or an image "
                "too large to import)"
            )

    def add_stream(self, layer: str, count: int) -> None:
        self.stream_bytes += count
        if self.stream_bytes > self.limits.max_stream_bytes:
            raise ImportRejected(
                f"{layer}: more than {self.limits.max_stream_bytes} bytes of uncompressed tar "
                "data over all layers (a compression bomb, or an image too large to import)"
            )
