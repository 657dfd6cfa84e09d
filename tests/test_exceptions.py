import pytest

from riskml.exceptions import ConfigError, exit_on_error


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
