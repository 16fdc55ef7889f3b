"""The Sandlotfile parser, `.dockerignore` rules and reading a layer stack without a mount."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandlot.dockerignore import IgnoreRules
from sandlot.templates import sandlotfile as sf
from sandlot.templates.stack import lookup, make_parents, resolve_owner


def test_instructions_lines_and_continuations() -> None:
    text = '# c\nFROM base\n\nRUN a && \\\n  # dropped\n  b\nenv A=1 B="two words"\n'
    parsed = sf.parse(text)
    assert [(i.line, i.keyword, i.text) for i in parsed] == [
        (2, "FROM", "base"),
        (4, "RUN", "a && b"),
        (7, "ENV", 'A=1 B="two words"'),
    ]
    assert sf.env_pairs(parsed[2], {}) == {"A": "1", "B": "two words"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: the Sandlotfile is empty"),
        ("RUN x\n", "line 1: the first instruction must be FROM, not RUN"),
        ("FROM base\nFROM base\n", "line 2: only one FROM"),
        ("FROM base\n\nFROBNICATE x\n", "line 3: unknown instruction 'FROBNICATE'"),
        ("FROM base\nLABEL a=b\n", "line 2: LABEL is not supported"),
        ("FROM base\nRUN\n", "line 2: RUN needs arguments"),
        ('FROM base\nCMD ["a", 1]\n', "line 2: CMD: the JSON form needs a list of strings"),
        ('FROM base\nCMD ["a"\n', "line 2: CMD: not a valid JSON array"),
        ("FROM base\nEXPOSE 53/udp\n", "line 2: EXPOSE: '53/udp' is not a TCP port"),
        ("FROM base\nEXPOSE 70000\n", "line 2: EXPOSE: '70000'"),
        ("FROM base\nENV 1A=x\n", "line 2: ENV: '1A' is not a variable name"),
        ("FROM base\nCOPY only\n", "line 2: COPY needs at least one source and a destination"),
        ("FROM base\nADD http://x/y /y\n", "line 2: ADD from a URL is not supported"),
        ("FROM base\nCOPY --from=build a b\n", "line 2: COPY: unsupported option '--from=build'"),
        ("FROM a b\n", "line 1: FROM takes one template name"),
    ],
)
def test_mistakes_name_their_line(text: str, message: str) -> None:
    with pytest.raises(sf.SandlotfileError) as caught:
        sf.parse(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_commands_copy_and_substitution() -> None:
    run, cmd, copy = sf.parse(
        'FROM b\nRUN echo "$HOME"\nCMD ["python3", "-m", "x"]\n'
        "COPY --chown=app:app --chmod=0750 a ${DIR}/b /opt/$DIR/\n"
    )[1:]
    assert sf.command(run) == ["/bin/sh", "-c", 'echo "$HOME"']
    assert sf.command(cmd) == ["python3", "-m", "x"]
    args = sf.copy_args(copy, {"DIR": "d"})
    assert (args.sources, args.destination) == (("a", "d/b"), "/opt/d/")
    assert (args.chown, args.chmod, args.extract) == ("app:app", 0o750, False)


def test_dockerignore_rules(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text(
        "# comment\nnode_modules\n**/*.log\n!keep.log\nbuild/*\n/secret?.txt\n"
    )
    rules = IgnoreRules.read(tmp_path / ".dockerignore")
    ignored = {
        "node_modules": True,
        "node_modules/a/b.js": True,
        "src/node_modules": False,
        "x.log": True,
        "a/b/c.log": True,
        "keep.log": False,
        "build/out": True,
        "build": False,
        "secret1.txt": True,
        "secret12.txt": False,
        "src/main.py": False,
    }
    assert {path: rules.ignored(path) for path in ignored} == ignored
    assert not IgnoreRules.read(tmp_path / "absent").ignored("anything")


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def test_stack_lookup_follows_overlay_rules(tmp_path: Path) -> None:
    bottom, middle, top = (tmp_path / n for n in ("bottom", "middle", "top"))
    for layer in (bottom, middle, top):
        (layer / "etc").mkdir(parents=True)
    (bottom / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/h:/bin/sh\n"
    )
    (bottom / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    (bottom / "etc" / "gone").write_text("x")
    (bottom / "data").mkdir()
    (bottom / "data" / "old").write_text("x")
    whiteout(middle / "etc" / "gone")
    (middle / "data").mkdir()
    os.setxattr(middle / "data", "trusted.overlay.opaque", b"y")
    (middle / "data" / "new").write_text("x")
    (top / "link").symlink_to("/etc")
    layers = (top, middle, bottom)
    assert lookup(layers, "/etc/passwd") == bottom / "etc" / "passwd"
    assert lookup(layers, "/etc/gone") is None  # whited out
    assert lookup(layers, "/data/old") is None  # behind an opaque directory
    assert lookup(layers, "/data/new") == middle / "data" / "new"
    assert lookup(layers, "/link/passwd") is None  # never through a symlink
    assert resolve_owner(layers, "app") == (1000, 1001)
    assert resolve_owner(layers, "app:staff") == (1000, 50)
    assert resolve_owner(layers, "4242") == (4242, 4242)
    with pytest.raises(LookupError, match="no user 'nobody'"):
        resolve_owner(layers, "nobody")
    new = tmp_path / "new"
    new.mkdir()
    os.chmod(bottom / "data", 0o700)
    host = make_parents(new, layers, "/etc/app/conf.d", owner=100000)
    made = os.fstat(host)
    os.close(host)
    assert os.path.samestat(made, os.stat(new / "etc" / "app" / "conf.d"))
    assert os.stat(new / "etc").st_mode & 0o777 == os.stat(bottom / "etc").st_mode & 0o777
    assert os.stat(new / "etc" / "app").st_uid == 100000
    with pytest.raises(NotADirectoryError):
        make_parents(new, layers, "/etc/passwd/x", owner=0)
    # `..` stops at the layer's root; a symlink in the new layer is never walked through.
    os.close(make_parents(new, layers, "/../../../../made", owner=0))
    assert (new / "made").is_dir() and not (tmp_path.parent / "made").exists()
    (new / "hop").symlink_to(tmp_path)
    with pytest.raises(NotADirectoryError, match="/hop is not a directory"):
        make_parents(new, layers, "/hop/x", owner=0)
    assert not (tmp_path / "x").exists()
