"""How a user's value appears in an error message: cut to a length one line can hold, with no
character that would break the line or the terminal.

A 1 MB `accelerator_type` used to be echoed back in a 1 MB error line. Every message that
quotes what the user wrote (a value, a key, a path, a `--set` item, a tag) goes through `shown`
(a value's repr) or `clip` (text), so no refusal is longer than a few hundred characters and a
newline or control character in a name is shown escaped, not obeyed.
"""
from __future__ import annotations

# A value quoted in a message: enough to recognise it, short enough for one terminal line.
MAX_SHOWN_CHARS = 80


def clip(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """`text` with non-printable characters escaped (`\\n`, `\\x00`, `\\u202e`), cut after `limit`
    characters with `…` and its full length."""
    head = text[:limit]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else repr(c)[1:-1] for c in head)
    return head if len(text) <= limit else f"{head}… ({len(text):,} chars)"


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """`repr(value)` cut by `clip` (a long string's repr is taken of its head only).

    An integer too long for Python to print (over 4,300 digits) is named by its size instead.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{repr(value[:limit])[:limit]}… (a string of {len(value):,} chars)"
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return f"an integer of {value.bit_length():,} bits" if isinstance(value, int) else "a value too long to show"
    return clip(text, limit)
