"""policy_from_text: the planner_policy setting ("name=value,...") -> planner Policy."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing_app.app import policy_text as planning
from routing_app.app.policy_text import policy_from_text
from routing_app.config import ConfigError
from routing_app.planner import Policy


def test_sets_the_named_fields_and_keeps_the_defaults() -> None:
    policy = policy_from_text("partition_capacity=2000,min_dwell_s=20")
    assert isinstance(policy, Policy)
    assert policy.partition_capacity == 2000.0
    assert type(policy.partition_capacity) is float
    assert policy.min_dwell_s == 20.0
    assert type(policy.min_dwell_s) is float
    assert policy == dataclasses.replace(Policy(), partition_capacity=2000.0, min_dwell_s=20.0)


def test_int_fields_stay_int() -> None:
    policy = policy_from_text("max_moves_per_cycle=3")
    assert policy.max_moves_per_cycle == 3
    assert type(policy.max_moves_per_cycle) is int


def test_empty_text_is_the_default_policy() -> None:
    assert policy_from_text("") == Policy()
    assert policy_from_text(" , ,") == Policy()


def test_whitespace_and_empty_parts_are_ignored() -> None:
    policy = policy_from_text(" partition_capacity = 1500.5 ,, max_moves_per_cycle= 7 ,")
    assert (policy.partition_capacity, policy.max_moves_per_cycle) == (1500.5, 7)
    assert type(policy.max_moves_per_cycle) is int


def test_the_last_of_repeated_names_wins() -> None:
    assert policy_from_text("min_dwell_s=1,min_dwell_s=2").min_dwell_s == 2.0


def test_result_is_frozen() -> None:
    policy = policy_from_text("min_dwell_s=5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.min_dwell_s = 6.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus=1", "bogus"),
        ("partition_capacity=2000,nope=3", "nope"),
        ("partition_capacity", "partition_capacity"),  # no '='
        ("min_dwell_s:20", "min_dwell_s:20"),
        ("=5", "=5"),
    ],
)
def test_unknown_names_and_missing_equals_name_the_part(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from_text(text)
    assert named in str(info.value)
    assert "planner_policy" in str(info.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("partition_capacity=lots", "partition_capacity"),
        ("partition_capacity=", "partition_capacity"),
        ("min_dwell_s=20s", "min_dwell_s"),
        ("max_moves_per_cycle=2.5", "max_moves_per_cycle"),  # an int field takes no fraction
        ("max_moves_per_cycle=many", "max_moves_per_cycle"),
        ("min_dwell_s=1,max_moves_per_cycle=x", "max_moves_per_cycle"),
    ],
)
def test_bad_numbers_raise_config_error_naming_the_field(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from_text(text)
    assert named in str(info.value)
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError


@pytest.mark.parametrize("text", ["partition_capacity=none", "max_moves_per_cycle=None", "min_dwell_s=NONE"])
def test_none_is_refused_for_fields_that_are_not_optional(text: str) -> None:
    name = text.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        policy_from_text(text)
    assert name in str(info.value)


def _field_kinds() -> list[tuple[str, object, bool]]:
    """(name, declared type without None, optional) of every Policy field, as declared now."""
    out = []
    for name, hint in typing.get_type_hints(Policy).items():
        args = typing.get_args(hint)
        optional = type(None) in args
        inner = next((a for a in args if a is not type(None)), hint) if optional else hint
        out.append((name, inner, optional))
    return out


@pytest.mark.parametrize(("name", "kind", "optional"), _field_kinds())
def test_every_policy_field_takes_a_value_of_its_declared_type(name: str, kind: type, optional: bool) -> None:
    # Whatever fields the planner's Policy has: text sets each with its declared type.
    sample = {int: "3", float: "2.5", bool: "true", str: "x"}[kind]
    value = getattr(policy_from_text(f"{name}={sample}"), name)
    assert type(value) is kind
    assert value == kind(sample) if kind is not bool else value is True
    none = f"{name}=none"
    if optional:
        assert getattr(policy_from_text(none), name) is None
    else:
        with pytest.raises(ConfigError, match=name):
            policy_from_text(none)


@pytest.mark.parametrize(("name", "kind", "optional"), _field_kinds())
def test_every_default_survives_a_round_trip_through_text(name: str, kind: type, optional: bool) -> None:
    default = getattr(Policy(), name)
    text = f"{name}={'none' if default is None else default}"
    assert policy_from_text(text) == Policy()


# -- A stand-in Policy with Optional, bool and str fields (the real one may grow them) -----------


@dataclasses.dataclass(frozen=True)
class _Knobs:
    capacity: float = 1.0
    moves: int = 2
    max_shards: int | None = None
    cap_rate: typing.Optional[float] = 3.0  # noqa: UP045 - the other spelling must work too
    dry_run: bool = False
    label: str = "a"


@pytest.fixture
def knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planning, "Policy", _Knobs)


@pytest.mark.usefixtures("knobs")
def test_optional_int_field_gets_an_int_not_a_float() -> None:
    knobs = typing.cast(_Knobs, policy_from_text("max_shards=4"))
    assert knobs.max_shards == 4
    assert type(knobs.max_shards) is int
    with pytest.raises(ConfigError, match="max_shards"):
        policy_from_text("max_shards=4.5")


@pytest.mark.usefixtures("knobs")
def test_none_sets_optional_fields_to_none() -> None:
    knobs = typing.cast(_Knobs, policy_from_text("max_shards=4,cap_rate=none"))
    assert (knobs.max_shards, knobs.cap_rate) == (4, None)
    knobs = typing.cast(_Knobs, policy_from_text("cap_rate=7,max_shards=None"))
    assert (knobs.max_shards, knobs.cap_rate) == (None, 7.0)
    assert type(knobs.cap_rate) is float
    with pytest.raises(ConfigError, match="moves"):
        policy_from_text("moves=none")


@pytest.mark.usefixtures("knobs")
@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("off", False)],
)
def test_bool_fields_parse_words(raw: str, value: bool) -> None:
    knobs = typing.cast(_Knobs, policy_from_text(f"dry_run={raw}"))
    assert knobs.dry_run is value


@pytest.mark.usefixtures("knobs")
def test_bad_bool_and_str_fields() -> None:
    with pytest.raises(ConfigError, match="dry_run"):
        policy_from_text("dry_run=maybe")
    knobs = typing.cast(_Knobs, policy_from_text("label= hot "))
    assert knobs.label == "hot"


@given(
    capacity=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    moves=st.integers(0, 10**9),
    dwell=st.integers(0, 10**6),
)
def test_numbers_round_trip(capacity: float, moves: int, dwell: int) -> None:
    policy = policy_from_text(
        f"partition_capacity={capacity!r},max_moves_per_cycle={moves},min_dwell_s={dwell}"
    )
    assert policy.partition_capacity == capacity
    assert (policy.max_moves_per_cycle, policy.min_dwell_s) == (moves, float(dwell))
    assert type(policy.min_dwell_s) is float
