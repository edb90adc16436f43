"""Read ``.env`` files, and rewrite one without some of its lines, atomically.

    >>> assignments = parse(Path(".env").read_text())
    >>> [a.key for a in assignments]
    ['BINANCE_API_KEY', 'BINANCE_API_SECRET']

The dialect is the common one (python-dotenv, docker compose): ``KEY=VALUE``,
an optional ``export``, ``#`` comments, single quotes taken literally,
double quotes with backslash escapes, and quoted values that run over
several lines (PEM keys). A line that is none of these is an error naming its
number and never its text, since the text may be a secret.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keybroker.errors import InvalidInput

_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


@dataclass(frozen=True, slots=True)
class Assignment:
    """One ``KEY=VALUE``; ``first_line``..``last_line`` (0-based) is where it is written."""

    key: str
    value: str = field(repr=False)
    first_line: int
    last_line: int


def parse(text: str, *, source: str = ".env file") -> list[Assignment]:
    """Every assignment in order (a key may appear twice; the last one wins when read)."""
    lines = text.splitlines(keepends=True)
    found: list[Assignment] = []
    index = 0
    while index < len(lines):
        first = index
        line = lines[index].rstrip("\r\n")
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            raise InvalidInput(f"{source}: line {first + 1} is not KEY=VALUE")
        key, rest = match.group(1), match.group(2)
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            while True:
                value, after = _closing(body, quote)
                if after is not None:
                    break
                if index >= len(lines):
                    raise InvalidInput(
                        f"{source}: the quote opened on line {first + 1} is not closed"
                    )
                body += "\n" + lines[index].rstrip("\r\n")
                index += 1
            tail = after.strip()
            if tail and not tail.startswith("#"):
                raise InvalidInput(f"{source}: line {index} has text after the closing quote")
        else:
            value = re.split(r"\s#", rest, maxsplit=1)[0].strip()
        found.append(Assignment(key, value, first, index - 1))
    return found


def _closing(body: str, quote: str) -> tuple[str, str | None]:
    """(value, text after the closing quote), or (_, None) when the quote is still open."""
    if quote == "'":
        end = body.find("'")
        return (body[:end], body[end + 1 :]) if end >= 0 else ("", None)
    chars: list[str] = []
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\" and position + 1 < len(body):
            following = body[position + 1]
            chars.append(_ESCAPES.get(following, "\\" + following))
            position += 2
            continue
        if char == '"':
            return "".join(chars), body[position + 1 :]
        chars.append(char)
        position += 1
    return "", None


def values(assignments: Iterable[Assignment]) -> dict[str, str]:
    """KEY → VALUE with the last assignment winning, as shells and dotenv do."""
    return {assignment.key: assignment.value for assignment in assignments}


def without(text: str, assignments: Iterable[Assignment]) -> str:
    """``text`` minus the lines of ``assignments``; every other byte is kept."""
    dropped: set[int] = set()
    for assignment in assignments:
        dropped.update(range(assignment.first_line, assignment.last_line + 1))
    lines = text.splitlines(keepends=True)
    return "".join(line for number, line in enumerate(lines) if number not in dropped)


def replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one.

    The temporary file is made in the same directory (``os.replace`` is only
    atomic within one file system), gets the old file's mode before any
    byte lands in it, and is fsynced, as is the directory after
    the rename, so the removal survives a power cut.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
