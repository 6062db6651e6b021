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
