"""`.dockerignore` rules: which files of a build context a build never sees.

Shared by the SDK (which leaves ignored files out of the context it uploads) and the
server (which applies them again, whoever sent the context), so both agree. Standard
library only, like `sandlot.errors`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[tuple[bool, re.Pattern[str]], ...] = ()
    """(is an exception `!`, pattern), in file order."""

    @classmethod
    def read(cls, path: Path) -> IgnoreRules:
        if not path.is_file():
            return cls()
        rules = []
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            rules.append((negate, re.compile(_translate(pattern))))
        return cls(tuple(rules))

    def ignored(self, relative: str) -> bool:
        """Last matching rule wins; a rule matching a directory covers what is inside.
        `relative` is a path inside the context, with `/` separators."""
        verdict = False
        prefixes = _prefixes(relative)
        for negate, pattern in self.rules:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                verdict = not negate
        return verdict


def _translate(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression: `**` spans directories, `*`
    and `?` stay within one path component."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > i:
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _prefixes(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
