"""The one set of argument checks, used at every public entry point.

Public functions check their arguments here, once, on the way in; inner code trusts
them (torchsde's ``sdeint`` works the same way). Every check raises the same exception
types with the same wording wherever it is used:

- a value of the wrong *type* (a string where a number is due, a bool where an int is
  due) raises :class:`TypeError`;
- a value of the right type outside its allowed range or set raises :class:`ValueError`.

Each message names the argument, what is allowed and what was received, e.g.
``n_paths must be an int >= 1, got 0``. Every check returns the value converted to a
plain Python type, so callers can write ``n = check_int("n", n, minimum=1)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

SEED_MAX = 2**32  # numpy's legacy seeding accepts [0, 2**32)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _num(x) -> str:
    """An integer bound exactly (``4294967295``), a real one to 6 digits (``0.5``)."""
    return str(x) if isinstance(x, numbers.Integral) else f"{x:g}"


def _bounds(minimum, maximum, *, strict: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict else '>='} {_num(minimum)}")
    if maximum is not None:
        parts.append(f"<= {_num(maximum)}")
    return " and ".join(parts)


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[minimum, maximum]``."""
    bounds = _bounds(minimum, maximum, strict=False)
    wanted = f"an int {bounds}".rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {wanted}, got {value!r} ({_type_name(value)})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def check_real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """``value`` as a finite ``float`` (not a bool) with ``value >= minimum`` (``>`` when
    ``strict``) and ``value <= maximum``."""
    bounds = _bounds(minimum, maximum, strict=strict)
    wanted = f"a finite number {bounds}".rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}, got {value!r} ({_type_name(value)})")
    out = float(value)
    low = minimum is not None and (out <= minimum if strict else out < minimum)
    high = maximum is not None and out > maximum
    if not math.isfinite(out) or low or high:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return out


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float ``> 0`` (``>= 0`` with ``allow_zero``)."""
    return check_real(name, value, minimum=0, strict=not allow_zero)


def check_dt(value: Any, name: str = "dt") -> float:
    """A time step: a finite number ``> 0``."""
    return check_real(name, value, minimum=0, strict=True)


def check_fraction(
    name: str, value: Any, *, open_low: bool = True, open_high: bool = True
) -> float:
    """A number in the unit interval, ends open or closed as asked (a level, a quantile)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number in the unit interval, got {value!r} ({_type_name(value)})"
        )
    out = float(value)
    low = out <= 0 if open_low else out < 0
    high = out >= 1 if open_high else out > 1
    if not math.isfinite(out) or low or high:
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return out


def check_seed(value: Any, name: str = "seed", *, maximum: int = SEED_MAX - 1) -> int:
    """A seed: an int in ``[0, maximum]``."""
    return check_int(name, value, minimum=0, maximum=maximum)


def check_bool(name: str, value: Any) -> bool:
    """A real ``bool`` (``0``/``1`` and strings are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({_type_name(value)})")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``; otherwise a ValueError naming both."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")
    return value


def check_str(name: str, value: Any, *, nonempty: bool = True) -> str:
    """A ``str`` (non-empty unless ``nonempty=False``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r} ({_type_name(value)})")
    if nonempty and not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


__all__ = [
    "check_int",
    "check_real",
    "check_positive",
    "check_dt",
    "check_fraction",
    "check_seed",
    "check_bool",
    "check_choice",
    "check_str",
]
