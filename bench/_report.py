"""
How the benches print a ratio against its target.
"""

from __future__ import annotations

import math

#: Below the printed precision, a rounding of the ratio itself.
_EPSILON = 1e-9


def against(ratio: float, target: float, *, at_most: bool = False) -> tuple[str, str]:
    """
    C{ratio} as printed (two decimals and C{x}) and whether it C{meets} or
    C{misses} C{target} (a floor: at least; with C{at_most}, a ceiling).
    The figure is rounded away from the target's side, so that it never
    reads as meeting a target it misses: 0.9988 against at least 1.0 is
    C{0.99x}, not C{1.00x}; 1.2504 against at most 1.25 is C{1.26x}.
    """
    meets = ratio <= target if at_most else ratio >= target
    rounded = math.ceil if at_most else math.floor
    shown = rounded(ratio * 100 + (-_EPSILON if at_most else _EPSILON)) / 100
    return f"{shown:.2f}x", "meets" if meets else "misses"
