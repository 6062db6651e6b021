"""Text from outside (file and folder names, metric names, notes, log lines) made safe to show
on a terminal: control characters would otherwise move the cursor, recolour or retitle the
operator's terminal, or hide the rest of a line."""

from __future__ import annotations

import unicodedata

KEEP = frozenset("\n\t")  # line structure of Vigil's own messages


def printable(text: object, keep: frozenset[str] = KEEP) -> str:
    """``text`` with every control, format (bidirectional overrides among them), separator
    other than a space, and surrogate character written as a visible escape (``\\x1b``,
    ``\\u202e``); the characters in ``keep`` stay as they are."""
    out = []
    for ch in str(text):
        if ch in keep or ch == " " or unicodedata.category(ch)[0] not in "CZ":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def one_line(text: object) -> str:
    """``printable`` with line breaks and tabs escaped too: a value shown inside one line."""
    return printable(text, keep=frozenset())


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control, format, surrogate (bytes that were not UTF-8) or
    unassigned character."""
    return any(unicodedata.category(ch)[0] == "C" for ch in text)


def folder_name_problem(name: str, max_chars: int) -> str | None:
    """Why ``name``, which will name a folder (a series, a pool), cannot: empty, a path, ``.``
    or ``..``, hidden, longer than ``max_chars``, or holding control characters; else None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return "not a folder name"
    if name.startswith("."):
        return "a hidden name"
    if len(name) > max_chars:
        return f"longer than {max_chars} characters"
    if has_control(name):
        return "has control characters or bytes that are not UTF-8"
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (of the driver's error it wraps, where it wraps
    one), control characters shown; its type's name where it says nothing."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return one_line(text.splitlines()[0]) if text else type(exc).__name__
