import errno
import os

import numpy as np
import pytest

from riskml.exceptions import ConfigError, exit_on_error, whole_number
from riskml.explain.kernel_threads import kernel_threads, share_of_threads


def test_entry_points_end_riskml_errors_with_one_line_and_let_bugs_through():
    @exit_on_error("riskml.demo")
    def bad_config():
        raise ConfigError("n_borrowers", -5, "an integer >= 1")

    with pytest.raises(SystemExit) as e:
        bad_config()
    assert str(e.value.code) == "riskml.demo: config key 'n_borrowers': got -5; expected an integer >= 1"

    @exit_on_error("riskml.demo")
    def bug():
        raise KeyError("x")

    with pytest.raises(KeyError):  # a bug keeps its traceback
        bug()
    assert exit_on_error("p")(lambda x: x + 1)(1) == 2


@pytest.mark.parametrize("value", [0, -1, 2.0, 2.5, True, "3", None, 11])
def test_whole_number_refuses_what_is_not_a_whole_number_in_range(value):
    with pytest.raises(ConfigError, match=rf"config key 'k': got {value!r}; expected a whole number in \[1, 10\]"):
        whole_number("k", value, 1, 10)


def test_whole_number_takes_numpy_integers_and_says_what_the_number_means():
    got = whole_number("k", np.int64(3), 1)
    assert got == 3 and type(got) is int
    with pytest.raises(ConfigError, match=r"expected a whole number of months >= 0 \(0: none\)$"):
        whole_number("k", -1, 0, what="a whole number of months", note="0: none")


def test_kernel_threads_are_set_for_the_block_and_restored():
    import numba as nb

    before = nb.get_num_threads()
    with kernel_threads(1):
        assert nb.get_num_threads() == 1
    assert nb.get_num_threads() == before
    with kernel_threads(None):  # None keeps the calling thread's count
        assert nb.get_num_threads() == before
    assert share_of_threads(before * 4) == 1  # never below one thread


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_ends_an_entry_point_with_one_line(code):
    @exit_on_error("riskml.generate")
    def write():
        raise OSError(code, os.strerror(code), "/data/synthetic/.default.tmp/panel.parquet")

    with pytest.raises(SystemExit) as e:
        write()
    line = str(e.value.code)
    assert "\n" not in line and line.startswith("riskml.generate: /data/synthetic/.default.tmp/panel.parquet: ")
    assert errno.errorcode[code] in line and "earlier outputs stand" in line

    @exit_on_error("riskml.generate")
    def missing():
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):  # not a disk's failure: a bug keeps its traceback
        missing()
