"""The data checks at the library's edges: count, first index, what passes."""
import math

import pytest
import torch

from pyro_deepgen.data.checks import check_finite, check_unit_interval


def test_check_finite_counts_and_names_the_first_bad_entry():
    x = torch.zeros(3, 4)
    x[1, 2] = math.nan
    x[2, 0] = math.inf
    x[2, 3] = -math.inf
    with pytest.raises(ValueError, match=r"^train data has 3 NaN or infinite entries \(the first at index \(1, 2\)\)"):
        check_finite(x, "train data")
    x = torch.zeros(5)
    x[4] = math.nan
    with pytest.raises(ValueError, match=r"x has 1 NaN or infinite entry \(the first at index \(4,\)\)"):
        check_finite(x, "x")


def test_check_finite_passes_finite_integer_and_empty_tensors():
    check_finite(torch.randn(4, 3), "x")
    check_finite(torch.tensor([1, 2, 3]), "x")  # integer tensors cannot hold NaN
    check_finite(torch.empty(0, 784), "x")
    check_finite(torch.empty(0), "x")
    check_finite([math.nan], "x")  # not a tensor: left to the caller's own checks


def test_check_unit_interval_counts_names_and_gives_the_value():
    x = torch.full((2, 3), 0.5, dtype=torch.float64)
    x[0, 1] = 255.0
    x[1, 2] = -0.25
    first = r"^x has 2 entries outside \[0, 1\] \(the first at index \(0, 1\), value 255\)"
    with pytest.raises(ValueError, match=first):
        check_unit_interval(x, "x")
    with pytest.raises(ValueError, match="rescale the data .* or use likelihood='gaussian'"):
        check_unit_interval(x, "x")


def test_check_unit_interval_rejects_nan_and_passes_edges_integers_and_empty():
    with pytest.raises(ValueError, match=r"x has 1 NaN or infinite entry \(the first at index \(2,\)\)"):
        check_unit_interval(torch.tensor([0.0, 1.0, math.nan]), "x")
    check_unit_interval(torch.tensor([0.0, 1.0, 0.5]), "x")  # the edges are inside
    check_unit_interval(torch.tensor([0, 1, 1], dtype=torch.uint8), "x")
    check_unit_interval(torch.empty(0, 3), "x")
    with pytest.raises(ValueError, match=r"x has 1 entry outside \[0, 1\] \(the first at index \(1,\), value 2\)"):
        check_unit_interval(torch.tensor([1, 2]), "x")
