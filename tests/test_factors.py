"""The factor catalogue is data every stage looks up: check it says what DOMAIN.md says."""

import pytest

from riskml import factors
from riskml.schema import BEHAVIOUR


def test_the_seven_documented_causes_in_domain_order():
    assert factors.CAUSES == (
        "overdue", "multi_lending", "abnormal_use", "score_decline",
        "policy_tightening", "agreement_violation", "maintenance",
    )
    assert factors.factor_ids()[-1] == factors.OTHER
    assert not factors.CATALOGUE[factors.OTHER].documented


@pytest.mark.parametrize("fid, actionable", [
    ("overdue", True), ("multi_lending", True), ("abnormal_use", True), ("score_decline", True),
    ("policy_tightening", False), ("agreement_violation", False), ("maintenance", False),
])
def test_only_behaviour_the_user_controls_is_actionable(fid, actionable):
    f = factors.get(fid)
    assert f.actionable is actionable
    assert f.advice  # every factor says something to the user, actionable or not
    # an actionable factor can be rectified: at least one signal has a rectified value
    assert any(s.rectified is not None for s in f.signals) is actionable


def test_every_behaviour_column_belongs_to_exactly_one_factor():
    owners = {}
    for f in factors.CATALOGUE.values():
        for col in f.columns:
            assert col not in owners, f"{col} in {owners.get(col)} and {f.id}"
            owners[col] = f.id
    assert set(owners) == {c.name for c in BEHAVIOUR}


def test_directions_follow_the_domain():
    assert factors.signal_of_column("days_past_due").direction == +1
    assert factors.signal_of_column("external_score").direction == -1  # higher score, lower risk
    assert factors.factor_of_column("invest_share") == "abnormal_use"
    assert factors.factor_of_column("not_a_column") == factors.OTHER
    assert factors.signal_of_column("not_a_column") is None


def test_unknown_factor_names_the_id_and_the_choices():
    with pytest.raises(KeyError, match=r"unknown factor id 'fraud'.*agreement_violation"):
        factors.get("fraud")


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        factors.CATALOGUE["new"] = None  # type: ignore[index]
