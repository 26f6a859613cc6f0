"""Quoting text that comes from a file (a key, a class name, a config value) in a one-line message.

Such text is hostile: an ANSI escape in a pickled class name can clear the screen or forge an ``OK`` line, a
newline splits "one line" in two, a 10 MB key makes a 10 MB message. :func:`printable` shows control and
invisible characters as escapes (``\\x1b``, ``\\n``, ``\\u202e``) and cuts the text to a bounded length.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Iterable

#: Default longest quoted name, in characters (an ellipsis marks a cut).
MAX_NAME = 80
_ELLIPSIS = "\u2026"
# Unicode categories never shown raw: controls, format characters (bidi overrides, zero-width), surrogates,
# private use, unassigned, line/paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(value: Any, limit: int = MAX_NAME) -> str:
    """``value`` as text safe for one terminal line: hidden characters escaped, at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    head = text[: limit + 1]  # escaping only lengthens: never look at more than can be shown
    out = []
    for ch in head:
        if ch == " " or (ch.isprintable() and unicodedata.category(ch) not in _HIDDEN):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    shown = "".join(out)
    if len(text) > limit or len(shown) > limit:
        shown = shown[: max(limit - 1, 0)] + _ELLIPSIS
    return shown


def printable_list(values: Iterable[Any], limit: int = 5, each: int = MAX_NAME) -> str:
    """Up to ``limit`` values, each through :func:`printable`, comma-separated, with ``(+N more)`` for the rest."""
    values = list(values)
    shown = ", ".join(printable(v, each) for v in values[:limit])
    return shown + (f" (+{len(values) - limit} more)" if len(values) > limit else "")


#: Longest line :func:`terminal_line` lets through (a message may quote many names; a 10 MB one is cut).
MAX_LINE = 4000


def terminal_line(text: Any, limit: int = MAX_LINE) -> str:
    """A whole message made safe for one terminal line (what the CLI prints and logs): every hidden character
    escaped, whatever part of the message it came from (a file name listed from a folder, a value read from a
    file), cut at ``limit`` characters. Text already passed through :func:`printable` comes out unchanged."""
    return printable(text, limit)

