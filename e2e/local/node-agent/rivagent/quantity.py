"""Kubernetes resource quantities (pure): parse to exact Fractions, format bytes back."""

from fractions import Fraction
import math
import re

_SUFFIX = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_RE = re.compile(r"^([+-]?[0-9]*\.?[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)$")


class QuantityError(ValueError):
    pass


def parse(q) -> Fraction:
    """'1Gi' -> 1073741824, '250m' -> 1/4, '1e3' -> 1000. Raises QuantityError."""
    if isinstance(q, (int, float)):
        return Fraction(q)
    m = _RE.match(str(q).strip())
    if not m or m.group(3) not in _SUFFIX or (m.group(2) and m.group(3)):
        raise QuantityError(f"not a quantity: {q!r}")
    value = Fraction(m.group(1))
    if m.group(2):
        value *= Fraction(10) ** int(m.group(2))
    return value * _SUFFIX[m.group(3)]


def to_bytes(q) -> int:
    """Storage quantities round up to whole bytes, as the API server's canonical form does."""
    return math.ceil(parse(q))


def format_bytes(n: int) -> str:
    """The largest binary suffix that represents n exactly ('2Gi', '1536Mi', '1000')."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIX[suffix])
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def divide_ceil(value, divisor) -> int:
    """resourceFieldRef: ceil(value / divisor), at least 1 for a non-zero value (as the kubelet)."""
    v = parse(value)
    d = parse(divisor or "1")
    if d == 0:
        raise QuantityError("divisor is zero")
    return math.ceil(v / d)
