"""How a user's value appears in an error message: its repr, cut to a length one line can hold.

A 1 MB `accelerator_type` used to be echoed back in a 1 MB error line. Every message that
quotes what the user wrote (a value, a key, a `--set` item, a tag) goes through `shown` (or
`clip` for text that is not a value), so no refusal is longer than a few hundred characters.
"""
from __future__ import annotations

# A value quoted in a message: enough to recognise it, short enough for one terminal line.
MAX_SHOWN_CHARS = 80


def clip(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """`text` itself when short, else its first characters, `…` and its full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars)"


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """`repr(value)` (control characters and newlines escaped), cut by `clip`.

    An integer too long for Python to print (over 4,300 digits) is named by its size instead.
    """
    if isinstance(value, str) and len(value) > limit:
        # repr of the head only, not of megabytes
        return f"{repr(value[:limit])[:limit]}… (a string of {len(value):,} chars)"
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return f"an integer of {value.bit_length():,} bits" if isinstance(value, int) else "a value too long to show"
    return clip(text, limit)
