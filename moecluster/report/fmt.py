"""Number formatting shared by the terminal tables, the HTML page and `moecluster estimate`."""
from __future__ import annotations

import math
import re
from collections.abc import Callable

from moecluster.report.aggregate.stats import Estimate

_SI = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))
_SMALL = (("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12), ("f", 1e-15))


def si(v: float | None, unit: str = "", digits: int = 3) -> str:
    """1.23 k, 4.5 M, 12 mJ ... (n/a for None/NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    for p, s in _SI:
        if a >= s:
            return f"{v / s:.{digits}g} {p}{unit}".rstrip()
    if a >= 1 or a == 0 or not unit:
        return f"{v:.{digits}g} {unit}".rstrip()
    for p, s in _SMALL:
        if a >= s:
            return f"{v / s:.{digits}g} {p}{unit}"
    return f"{v:.{digits}g} {unit}"


def params(v: float | None) -> str:
    """Parameter counts the way papers write them: 46.7 B, 368 M."""
    return si(v).replace(" G", " B") if v is not None else "n/a"


def seconds(v: float | None) -> str:
    return si(v, "s")


def num(v: float | None, digits: int = 4) -> str:
    """A plain figure: whole numbers with thousands separators from 1,000 up (every table the same),
    `digits` significant digits below."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if abs(v) >= 1e3:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def sci(v: float | None, digits: int = 3) -> str:
    """Scientific notation, as seed 000 prints its normalisations (7.91E-08)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits - 1}E}"


def _decimals(text: str) -> int | None:
    """Decimals shown in a plain fixed-point figure ("1.586" -> 3), None for other notations."""
    body = text.replace(",", "")
    if not body.replace(".", "", 1).lstrip("-").isdigit():
        return None
    return len(body.split(".")[1]) if "." in body else 0


def _fixed(v: float, digits: int) -> str | None:
    """`v` to `digits` significant digits with its trailing zeros kept ("3.000", "0.5700"), thousands
    separated from 1,000 up as `num` does; None where `num` would not print fixed-point."""
    if abs(v) >= 1e3:
        return f"{v:,.0f}"
    text = f"{v:#.{digits}g}"
    return text.rstrip(".") if "e" not in text else None


def est(e: Estimate | None, f: Callable[[float], str] = num) -> str:
    """`mean [lo, hi]` (bounds shown to the mean's decimals, with thousands separators from 1,000),
    or the mean alone (n=1, or an interval whose bounds print as the mean: "3", never "3 [3, 3]"),
    or n/a. With `num`, the mean keeps the zeros its digits carry ("3.000 [2.960, 3.040]")."""
    if e is None:
        return "n/a"
    mean = f(e.mean)
    if e.lo is None or e.hi is None:
        return mean
    fixed = _fixed(e.mean, 4) if f is num else None
    d = _decimals(fixed) if fixed is not None else None
    if d is None:
        lo, hi = f(e.lo), f(e.hi)
    else:
        lo, hi = f"{e.lo:,.{d}f}", f"{e.hi:,.{d}f}"
        mean = fixed or mean
    if lo == hi == mean:
        return f(e.mean)
    return f"{mean} [{lo}, {hi}]"


def ratio(e: Estimate | None) -> str:
    """A ratio with its interval, and † where the interval contains 1 (no clear winner)."""
    if e is None:
        return "n/a"
    text = est(e, lambda v: f"{v:.3f}")
    return f"{text} †" if e.crosses_one else text


def pct(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.{digits}f} %"


def signed_pct(v: float | None, digits: int = 1) -> str:
    """A relative change: "+1.2 %", "−0.4 %" (a true minus sign), n/a."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:+.{digits}f} %".replace("-", "−")


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def superscript(n: int) -> str:
    """A footnote mark: 1 -> "¹", 12 -> "¹²"."""
    return str(n).translate(_SUPERSCRIPT)


_INTERVAL = re.compile(r"^(.+?) (\[[^\]]+\]( †)?)$")


def split_interval(text: str) -> tuple[str, str] | None:
    """("16,693", "[16,544, 16,842]") from "16,693 [16,544, 16,842]" (the † stays with the interval);
    None for text that is not a figure with its interval."""
    m = _INTERVAL.match(text)
    return (m.group(1), m.group(2)) if m else None
