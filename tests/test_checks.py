"""The one set of argument checks: types raise TypeError, ranges ValueError, same wording."""

import math

import numpy as np
import pytest

from sde_utils.checks import (
    check_bool,
    check_choice,
    check_dt,
    check_fraction,
    check_int,
    check_positive,
    check_real,
    check_seed,
    check_str,
)


def test_int_accepts_integers_and_numpy_integers_and_returns_plain_int():
    assert check_int("n", 3, minimum=1) == 3
    out = check_int("n", np.int64(4), minimum=1)
    assert out == 4 and type(out) is int


@pytest.mark.parametrize("bad", [True, 1.0, "3", None])
def test_int_wrong_type_is_a_type_error_naming_argument_and_type(bad):
    with pytest.raises(TypeError, match=rf"n must be an int >= 1, got .* \({type(bad).__name__}\)"):
        check_int("n", bad, minimum=1)


def test_int_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match="k must be an int >= 0 and <= 5, got 6"):
        check_int("k", 6, minimum=0, maximum=5)


def test_real_bounds_strict_and_not():
    assert check_real("lam", 0, minimum=0) == 0.0
    with pytest.raises(ValueError, match="lam must be a finite number > 0, got 0"):
        check_real("lam", 0, minimum=0, strict=True)
    with pytest.raises(ValueError, match="x must be a finite number <= 1, got 2"):
        check_real("x", 2, maximum=1)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            check_real("x", bad)
    with pytest.raises(TypeError, match=r"x must be a finite number, got True \(bool\)"):
        check_real("x", True)


def test_positive_and_dt():
    assert check_positive("dt", 0.5) == 0.5
    assert check_positive("lam", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got 0"):
        check_positive("dt", 0)
    with pytest.raises(TypeError, match=r"dt must be a finite number > 0, got '1' \(str\)"):
        check_dt("1")
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got inf"):
        check_dt(math.inf)


def test_fraction_open_and_closed_ends():
    assert check_fraction("level", 0.95) == 0.95
    with pytest.raises(ValueError, match=r"level must lie in \(0, 1\), got 1"):
        check_fraction("level", 1)
    assert check_fraction("q", 1.0, open_high=False) == 1.0
    with pytest.raises(TypeError, match="level must be a number in the unit interval"):
        check_fraction("level", "0.9")


def test_seed_bool_choice_str():
    assert check_seed(0) == 0
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        check_seed(-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        check_seed(1.5)
    assert check_bool("resume", False) is False
    with pytest.raises(TypeError, match=r"resume must be True or False, got 1 \(int\)"):
        check_bool("resume", 1)
    assert check_choice("kind", "input", ["input", "hidden"]) == "input"
    with pytest.raises(ValueError, match=r"kind='layer' is not allowed; choose one of"):
        check_choice("kind", "layer", ["input", "hidden"])
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        check_str("name", "")


def test_integer_bounds_print_exactly():
    with pytest.raises(
        ValueError, match="seed must be an int >= 0 and <= 4294967295, got 4294967296"
    ):
        check_seed(2**32)
