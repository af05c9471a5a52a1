"""The ruleset parser: every valid file round-trips through TOML; garbage is
rejected with a RulesetError naming the field, never another exception."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from posp.risk.model import RulesetFile
from posp.risk.ruleset import RulesetError, default_ruleset_text, parse_ruleset

_minor = st.integers(0, 10**12 - 1)
_small = st.integers(1, 24)
_txn = st.sampled_from(["purchase", "refund", "preauth", "completion", "transfer"])
_times = st.times().map(lambda t: t.replace(microsecond=0))

_KINDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "single_amount": st.fixed_dictionaries(
        {"max_minor": st.dictionaries(_txn, _minor, max_size=3), "use_tms_caps": st.booleans()}
    ),
    "velocity": st.fixed_dictionaries(
        {
            "subject": st.sampled_from(["card", "card_terminal", "merchant"]),
            "window": st.sampled_from(["day", "week"]),
            "max_amount_minor": _minor,
            "max_count": st.integers(0, 1000),
            "net_of_refunds": st.booleans(),
        }
    ),
    "interval": st.fixed_dictionaries({"min_interval_s": st.integers(1, 86400)}),
    "pair_months": st.fixed_dictionaries({"max_months": _small}),
    "round_amount": st.fixed_dictionaries({"unit_minor": st.integers(100, 10**9)}),
    "odd_amount": st.fixed_dictionaries({"min_amount_minor": _minor}),
    "night": st.fixed_dictionaries(
        {
            "business_start": st.just(dt.time(9)),
            "business_end": st.sampled_from([dt.time(20), dt.time(21), dt.time(22, 30)]),
            "max_single_minor": _minor,
            "max_card_night_minor": _minor,
        }
    ),
    "region": st.fixed_dictionaries(
        {
            "prefix_digits": st.integers(1, 4),
            "check_card_region": st.booleans(),
            "bin_regions": st.dictionaries(
                st.from_regex(r"\A[0-9]{6}\Z"), st.from_regex(r"\A[0-9]{4}\Z"), max_size=3
            ),
        }
    ),
    "merchant_spike": st.fixed_dictionaries(
        {"factor": st.floats(1.5, 100, allow_nan=False), "baseline_days": st.integers(1, 60)}
    ),
    "fallback": st.fixed_dictionaries({"max_per_day": st.integers(0, 100)}),
    "block_list": st.fixed_dictionaries(
        {"bins": st.lists(st.from_regex(r"\A[0-9]{6,8}\Z"), max_size=3)}
    ),
}

_id_tail = st.from_regex(r"\A[a-z0-9_.-]{0,8}\Z")
_scope = st.one_of(
    st.just({"kind": "all"}),
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["merchant_group", "mcc", "merchant", "terminal"]),
            "values": st.lists(st.from_regex(r"\A[0-9A-Za-z]{1,15}\Z"), min_size=1, max_size=3),
        }
    ),
)


@st.composite
def rule_dicts(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(_KINDS)))
    rule = {
        "id": f"r{index}-{draw(_id_tail)}",
        "kind": kind,
        "enabled": draw(st.booleans()),
        "action": draw(st.sampled_from(["decline", "flag", "shadow"])),
        "scope": draw(_scope),
        "txn_types": draw(st.lists(_txn, min_size=1, max_size=3)),
    }
    if draw(st.booleans()):
        rule["code"] = draw(st.sampled_from(["61", "65", "59", "57", "58", "45", "34"]))
    return rule | draw(_KINDS[kind])


@st.composite
def ruleset_dicts(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 6))
    return {
        "version": draw(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,20}\Z")),
        "business_day_rollover": draw(_times),
        "rules": [draw(rule_dicts(i)) for i in range(count)],
    }


def to_toml(model: RulesetFile) -> str:
    """A validated ruleset written back as TOML (sets as sorted lists, no nulls)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, frozenset | set):
            return sorted(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return tomli_w.dumps(plain(model.model_dump(mode="python")))


@settings(max_examples=100, deadline=None)
@given(ruleset_dicts())
def test_valid_rulesets_round_trip_through_toml(data: dict[str, Any]) -> None:
    model = RulesetFile.model_validate(data)
    assert parse_ruleset(to_toml(model)) == model


@settings(max_examples=100, deadline=None)
@given(ruleset_dicts().filter(lambda d: d["rules"]), st.data())
def test_a_wrong_value_is_rejected_with_a_message_naming_its_field(
    data: dict[str, Any], pick: st.DataObject
) -> None:
    rule = pick.draw(st.sampled_from(data["rules"]))
    field = pick.draw(st.sampled_from(sorted(set(rule) - {"kind"})))
    rule[field] = [{"bad": []}]
    with pytest.raises(RulesetError) as raised:
        parse_ruleset(tomli_w.dumps(data), source="candidate.toml")
    assert "candidate.toml" in str(raised.value) and field in str(raised.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_ruleset_or_a_ruleset_error(text: str) -> None:
    try:
        parse_ruleset(text)
    except RulesetError as exc:
        assert str(exc).startswith("ruleset: ")


_ONE = 'version = "v"\n[[rules]]\nid = "a"\n'


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[rules]]\nid = "a"\nkind = "round_amount"\n', "version"),
        ('version = "v"\n[[rules]]\nid = "a"\nkind = "teleport"\n', "rules[0]"),
        (
            _ONE + 'kind = "interval"\nmin_interval_s = 300\nspeling = 1\n',
            "speling",
        ),
        (
            _ONE + 'kind = "fallback"\nmax_per_day = 1\naction = "ban"\n',
            "action",
        ),
        (
            'version = "v"\n[[rules]]\nid = "a"\nkind = "fallback"\nmax_per_day = 1\ncode = "05"\n',
            "code",
        ),
        (
            'version = "v"\n' + '[[rules]]\nid = "a"\nkind = "fallback"\nmax_per_day = 1\n' * 2,
            "appears twice",
        ),
        (
            _ONE + 'kind = "velocity"\nsubject = "card"\nwindow = "day"\n',
            "max_count",
        ),
        ('version = "v"\nrules = 3\n', "rules"),
        ("version = \n", "not valid TOML"),
    ],
)
def test_typical_mistakes_name_their_field(text: str, named: str) -> None:
    with pytest.raises(RulesetError, match=r"rules\.toml") as raised:
        parse_ruleset(text, source="rules.toml")
    assert named in str(raised.value)


def test_the_shipped_default_round_trips() -> None:
    model = parse_ruleset(default_ruleset_text())
    assert parse_ruleset(to_toml(model)) == model and len(model.rules) == 17
