"""The benchmark scripts' timer."""

import pytest

from cuneidet.utils.timing import median_seconds


def test_median_seconds_warms_up_once_then_times_each_call():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)
