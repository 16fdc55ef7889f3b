"""The Sandlotfile: the subset of the Dockerfile that makes sense for a sandbox template.

`FROM <template>`, `RUN`, `COPY`/`ADD`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `CMD`,
`ENTRYPOINT`, plus `READY <command>`, a readiness check sandbox creation waits for.
Parsing is separate from building so a mistake is reported, naming its line, before
anything runs. Quoting follows the Dockerfile: JSON arrays for exec forms, otherwise a
shell command; `\\` continues a line; `#` starts a comment line.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

KEYWORDS = frozenset(
    {"FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "EXPOSE", "CMD", "ENTRYPOINT", "READY"}
)
DOCKER_ONLY = frozenset(
    {"ARG", "LABEL", "MAINTAINER", "VOLUME", "HEALTHCHECK", "ONBUILD", "SHELL", "STOPSIGNAL"}
)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class SandlotfileError(ValueError):
    """A Sandlotfile that cannot be built; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    text: str
    """The instruction's arguments as written (after joining continued lines)."""

    @property
    def source(self) -> str:
        return f"{self.keyword} {self.text}"


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    chown: str | None
    chmod: int | None
    extract: bool
    """ADD: unpack local tar archives into the destination."""


def parse(text: str) -> list[Instruction]:
    """Instructions in order; FROM must come first and only once."""
    instructions = [_instruction(number, line) for number, line in _logical_lines(text)]
    if not instructions:
        raise SandlotfileError(1, "the Sandlotfile is empty; it must start with FROM <template>")
    if instructions[0].keyword != "FROM":
        first = instructions[0]
        raise SandlotfileError(
            first.line, f"the first instruction must be FROM, not {first.keyword}"
        )
    for later in instructions[1:]:
        if later.keyword == "FROM":
            raise SandlotfileError(later.line, "only one FROM is supported (no multi-stage builds)")
    for instruction in instructions:
        _check(instruction)
    return instructions


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        lines.append((start, " ".join(part for part in pending if part)))
    return lines


def _instruction(number: int, line: str) -> Instruction:
    keyword, _, rest = line.partition(" ")
    keyword = keyword.upper()
    if keyword in DOCKER_ONLY:
        raise SandlotfileError(number, f"{keyword} is not supported in a Sandlotfile")
    if keyword not in KEYWORDS:
        raise SandlotfileError(
            number,
            f"unknown instruction {keyword!r}; a Sandlotfile knows {', '.join(sorted(KEYWORDS))}",
        )
    rest = rest.strip()
    if not rest:
        raise SandlotfileError(number, f"{keyword} needs arguments")
    return Instruction(number, keyword, rest)


def _check(instruction: Instruction) -> None:
    """Parse each instruction once up front, so every error comes before the build."""
    keyword = instruction.keyword
    if keyword == "ENV":
        env_pairs(instruction, {})
    elif keyword in ("COPY", "ADD"):
        copy_args(instruction, {})
    elif keyword == "EXPOSE":
        ports(instruction, {})
    elif keyword in ("RUN", "CMD", "ENTRYPOINT"):
        command(instruction)
    elif keyword == "FROM" and len(instruction.text.split()) != 1:
        raise SandlotfileError(instruction.line, "FROM takes one template name")


def substitute(text: str, env: dict[str, str]) -> str:
    """$NAME and ${NAME} from the environment built so far (unknown names become "")."""
    return VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def command(instruction: Instruction) -> list[str]:
    """RUN, CMD and ENTRYPOINT: a JSON array is run as is, anything else by /bin/sh -c."""
    text = instruction.text
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except ValueError:
            raise SandlotfileError(
                instruction.line, f"{instruction.keyword}: not a valid JSON array: {text}"
            ) from None
        if not argv or not all(isinstance(a, str) for a in argv):
            raise SandlotfileError(
                instruction.line, f"{instruction.keyword}: the JSON form needs a list of strings"
            )
        return list(argv)
    return ["/bin/sh", "-c", text]


def env_pairs(instruction: Instruction, env: dict[str, str]) -> dict[str, str]:
    """`ENV A=1 B="two words"`, or the old `ENV A some value`."""
    words = _split(instruction)
    if "=" not in words[0]:
        if len(words) < 2:
            raise SandlotfileError(instruction.line, "ENV needs NAME=value")
        pairs = [(words[0], " ".join(words[1:]))]
    else:
        pairs = []
        for word in words:
            name, eq, value = word.partition("=")
            if not eq:
                raise SandlotfileError(instruction.line, f"ENV: {word!r} is not NAME=value")
            pairs.append((name, value))
    result: dict[str, str] = {}
    for name, value in pairs:
        if not NAME.match(name):
            raise SandlotfileError(instruction.line, f"ENV: {name!r} is not a variable name")
        result[name] = substitute(value, {**env, **result})
    return result


def copy_args(instruction: Instruction, env: dict[str, str]) -> Copy:
    words = _split(instruction) if not instruction.text.startswith("[") else None
    if words is None:
        argv = command(instruction)
        flags, paths = [], argv
    else:
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
    chown: str | None = None
    chmod: int | None = None
    for flag in flags:
        name, _, value = flag.partition("=")
        if name == "--chown" and value:
            chown = substitute(value, env)
        elif name == "--chmod" and re.fullmatch(r"[0-7]{3,4}", value):
            chmod = int(value, 8)
        else:
            raise SandlotfileError(
                instruction.line, f"{instruction.keyword}: unsupported option {flag!r}"
            )
    if len(paths) < 2:
        raise SandlotfileError(
            instruction.line, f"{instruction.keyword} needs at least one source and a destination"
        )
    for source in paths[:-1]:
        if "://" in source:
            raise SandlotfileError(
                instruction.line,
                f"{instruction.keyword} from a URL is not supported; download it in a RUN step",
            )
    return Copy(
        sources=tuple(substitute(p, env) for p in paths[:-1]),
        destination=substitute(paths[-1], env),
        chown=chown,
        chmod=chmod,
        extract=instruction.keyword == "ADD",
    )


def ports(instruction: Instruction, env: dict[str, str]) -> list[int]:
    found = []
    for word in substitute(instruction.text, env).split():
        number, _, protocol = word.partition("/")
        if protocol not in ("", "tcp") or not number.isdigit() or not 0 < int(number) < 65536:
            raise SandlotfileError(
                instruction.line, f"EXPOSE: {word!r} is not a TCP port (e.g. 8080 or 8080/tcp)"
            )
        found.append(int(number))
    return found


def _split(instruction: Instruction) -> list[str]:
    try:
        return shlex.split(instruction.text)
    except ValueError as exc:
        raise SandlotfileError(instruction.line, f"{instruction.keyword}: {exc}") from None
