"""The earning rules (api/_rules.py) as a specification: each rule with numbers worked out by hand, then
properties over random rule sets and orders (Hypothesis): points are whole and never negative, caps are
never exceeded, the same input under the same rule hash gives the same points, the canonical encoding
round-trips and its hash is stable, and returns of a pending purchase, however split, take back exactly
what it earned.

``LOYALTY_HYPOTHESIS_EXAMPLES`` sets the examples per property (default 150: a few seconds in all).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api._errors import InvalidRequest
from api._rules import (
    DAY,
    InvalidReturn,
    Line,
    MemberContext,
    NotCanonical,
    Order,
    Quote,
    RuleSet,
    UnknownCurrency,
    UnknownEvent,
    canonical,
    cap_windows,
    parse_canonical,
    quote_engagement,
    quote_purchase,
    return_points,
    round_points,
    rule_hash,
)

EXAMPLES = int(os.environ.get("LOYALTY_HYPOTHESIS_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T0 = 1_717_200_000  # 2024-06-01 00:00:00 UTC, a Saturday


def rules(**fields: Any) -> RuleSet:
    body: dict[str, Any] = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}}
    body.update(fields)
    return RuleSet.model_validate(body)


def order(amount: int, *lines: Line, channel: str = "pos", store: str | None = None, at: int = T0) -> Order:
    return Order(channel=channel, store=store, currency="EUR", amount=amount, lines=lines, at=at)


def points(rule_set: RuleSet, o: Order, member: MemberContext | None = None) -> int:
    return quote_purchase(rule_set, o, member or MemberContext()).points


def kinds(quote: Quote) -> list[str]:
    return [x.kind for x in quote.lines]


# --------------------------------------------------------------------------- the base rate


@pytest.mark.parametrize(
    ("rounding", "amount", "expected"),
    [
        ("floor", 1250, 12),
        ("ceil", 1250, 13),
        ("half_up", 1250, 13),
        ("half_even", 1250, 12),
        ("half_even", 1350, 14),
        ("half_up", 1249, 12),
        ("ceil", 1200, 12),
        ("floor", 99, 0),
    ],
)
def test_rounding_applies_once_to_the_total(rounding: str, amount: int, expected: int) -> None:
    assert points(rules(rounding=rounding), order(amount)) == expected


def test_rounding_is_not_per_line() -> None:
    """Three lines of 0.5 points each: 1.5 in total, floored once to 1 (per line it would be 0)."""
    o = order(150, Line("A", None, 1, 50), Line("B", None, 1, 50), Line("C", None, 1, 50))
    quote = quote_purchase(rules(), o, MemberContext())
    assert quote.points == 1
    assert [x.points for x in quote.lines if x.kind == "line"] == ["0.5", "0.5", "0.5"]
    assert kinds(quote)[-1] == "rounding"


@pytest.mark.parametrize(
    ("currency", "rate", "amount", "expected"),
    [
        ("JPY", "0.01", 1234, 12),  # 1234 yen, no minor units: 12.34 points
        ("EUR", "1.5", 1234, 18),  # 12.34 EUR x 1.5 = 18.51
        ("KWD", "1", 12345, 12),  # 12.345 dinar (3 decimals)
        ("CLF", "1", 12345, 1),  # 1.2345 (4 decimals)
    ],
)
def test_minor_units_per_currency(currency: str, rate: str, amount: int, expected: int) -> None:
    rule_set = rules(earn={"basis": "points_per_unit", "rates": {currency: rate}})
    assert points(rule_set, Order("pos", None, currency, amount, (), T0)) == expected


def test_cashback_percent() -> None:
    """5 % of 20.00 EUR is 1.00 EUR, worth 100 points at 100 points per EUR (a point is 0.01 EUR)."""
    rule_set = rules(earn={"basis": "cashback_percent", "percent": "5", "points_per_unit": {"EUR": "100"}})
    assert points(rule_set, order(2000)) == 100
    assert points(rule_set, order(1999)) == 99  # 99.95 floored


def test_unknown_currency_is_a_typed_error() -> None:
    with pytest.raises(UnknownCurrency) as excinfo:
        quote_purchase(rules(), Order("pos", None, "GBP", 100, (), T0), MemberContext())
    assert excinfo.value.currency == "GBP"
    assert excinfo.value.errors == [
        {"field": "body.currency", "message": "the rule set gives no rate for GBP"}
    ]
    with pytest.raises(UnknownCurrency, match="not an ISO 4217"):
        quote_purchase(rules(), Order("pos", None, "XYZ", 100, (), T0), MemberContext())
    assert issubclass(UnknownCurrency, InvalidRequest)


def test_minimum_amount() -> None:
    rule_set = rules(minimum_amount={"EUR": 500})
    below = quote_purchase(rule_set, order(499), MemberContext())
    assert below.points == 0 and kinds(below) == ["rate", "minimum"]
    assert points(rule_set, order(500)) == 5
    assert points(rule_set, Order("pos", None, "EUR", 499, (), T0)) == 0
    # another currency's minimum does not apply
    multi = rules(
        earn={"basis": "points_per_unit", "rates": {"EUR": "1", "USD": "1"}}, minimum_amount={"EUR": 500}
    )
    assert points(multi, Order("pos", None, "USD", 300, (), T0)) == 3


# --------------------------------------------------------------------------- line items


def test_excluded_skus_earn_nothing() -> None:
    rule_set = rules(excluded_skus=["GIFTCARD"])
    quote = quote_purchase(
        rule_set, order(1300, Line("GIFTCARD", None, 2, 500), Line("MUG", None, 1, 300)), MemberContext()
    )
    assert quote.points == 3
    assert kinds(quote) == ["rate", "excluded", "line", "rounding"]


def test_category_multipliers_per_line() -> None:
    """4.50 of coffee x2 = 9, 2.00 of food x1 = 2, 3.00 of merch x0.5 = 1.5: 12.5, floored to 12."""
    rule_set = rules(categories={"coffee": "2", "merch": "0.5"})
    o = order(
        950, Line("LATTE", "coffee", 1, 450), Line("BAGEL", "food", 1, 200), Line("MUG", "merch", 1, 300)
    )
    quote = quote_purchase(rule_set, o, MemberContext())
    assert [x.points for x in quote.lines if x.kind == "line"] == ["9", "2", "1.5"]
    assert quote.points == 12


def test_an_order_discount_is_spread_over_the_lines() -> None:
    """Lines of 10.00 (coffee x2) and 10.00 paid 16.00: each counts 0.8, 16 + 8 = 24 points."""
    rule_set = rules(categories={"coffee": "2"})
    o = order(1600, Line("BEANS", "coffee", 2, 500), Line("MUG", "merch", 1, 1000))
    quote = quote_purchase(rule_set, o, MemberContext())
    assert quote.points == 24
    assert "discount" in kinds(quote)


def test_what_is_paid_beyond_the_lines_earns_nothing() -> None:
    """Lines of 10.00, paid 15.00 (shipping): 10 points."""
    assert points(rules(), order(1500, Line("MUG", None, 1, 1000))) == 10


def test_without_lines_the_amount_earns_at_the_base_rate() -> None:
    rule_set = rules(categories={"coffee": "3"})
    quote = quote_purchase(rule_set, order(1000), MemberContext())
    assert quote.points == 10 and kinds(quote) == ["rate", "amount", "rounding"]


# --------------------------------------------------------------------------- channels, stores, tiers


def test_channel_and_store_overrides() -> None:
    rule_set = rules(
        channels={
            "online": {"earn": {"basis": "points_per_unit", "rates": {"EUR": "2"}}},
            "pos": {"multiplier": "2"},
        },
        stores={
            "airport": {"multiplier": "3"},
            "outlet": {"earn": {"basis": "points_per_unit", "rates": {"EUR": "0.5"}}},
        },
    )
    assert points(rule_set, order(1000, channel="online")) == 20  # the channel's rate
    assert points(rule_set, order(1000, channel="pos")) == 20  # base rate x2 for the channel
    assert points(rule_set, order(1000, channel="pos", store="airport")) == 60  # x2 channel, x3 store
    assert points(rule_set, order(1000, channel="online", store="outlet")) == 5  # the store's rate wins
    assert points(rule_set, order(1000, channel="pos", store="outlet")) == 10  # 0.5 rate, x2 channel
    assert points(rule_set, order(1000, channel="online", store="elsewhere")) == 20


def test_tier_multipliers() -> None:
    rule_set = rules(tiers={"gold": "1.5", "silver": "1.25"})
    assert points(rule_set, order(1000), MemberContext(tier="gold")) == 15
    assert points(rule_set, order(1000), MemberContext(tier="silver")) == 12  # 12.5 floored
    assert points(rule_set, order(1000), MemberContext(tier="member")) == 10
    assert points(rule_set, order(1000), MemberContext()) == 10


# --------------------------------------------------------------------------- campaigns


def campaign(**fields: Any) -> dict[str, Any]:
    return {"name": "summer", "start": T0, "end": T0 + 7 * DAY, **fields}


@pytest.mark.parametrize(
    ("at", "expected"),
    [(T0 - 1, 10), (T0, 20), (T0 + 7 * DAY - 1, 20), (T0 + 7 * DAY, 10)],
)
def test_campaign_window_is_start_inclusive_end_exclusive(at: int, expected: int) -> None:
    rule_set = rules(campaigns=[campaign(multiplier="2")])
    assert points(rule_set, order(1000, at=at)) == expected


def test_campaign_targets() -> None:
    rule_set = rules(
        campaigns=[
            campaign(name="gold-online", multiplier="2", tiers=["gold"], channels=["online"]),
            campaign(name="coffee-week", multiplier="3", categories=["coffee"]),
            campaign(name="welcome", bonus=50, categories=["merch"]),
        ]
    )
    gold = MemberContext(tier="gold")
    assert points(rule_set, order(1000, channel="online"), gold) == 20
    assert points(rule_set, order(1000, channel="pos"), gold) == 10
    assert points(rule_set, order(1000, channel="online"), MemberContext(tier="silver")) == 10
    assert (
        points(rule_set, order(1000, channel="online"), MemberContext()) == 10
    )  # a tier target needs a tier
    # coffee x3 on its line only; the merch line brings the bonus once
    o = order(1500, Line("LATTE", "coffee", 1, 500), Line("MUG", "merch", 2, 500))
    assert points(rule_set, o) == 15 + 10 + 50
    # a category campaign needs line items
    assert points(rule_set, order(1500)) == 15


def test_campaigns_stack() -> None:
    rule_set = rules(
        campaigns=[
            campaign(name="a", multiplier="2"),
            campaign(name="b", multiplier="1.5"),
            campaign(name="c", bonus=7),
            campaign(name="d", bonus=3),
        ]
    )
    assert points(rule_set, order(1000)) == 10 * 2 * 3 // 2 + 7 + 3


def test_a_bonus_on_an_excluded_line_only_is_not_earned() -> None:
    rule_set = rules(excluded_skus=["GIFT"], campaigns=[campaign(bonus=20, categories=["cards"])])
    assert points(rule_set, order(1000, Line("GIFT", "cards", 1, 1000))) == 0


# --------------------------------------------------------------------------- caps and pending


def test_caps() -> None:
    rule_set = rules(caps={"day": 100, "week": 300, "month": 500})
    assert points(rule_set, order(5000), MemberContext(earned_day=95, earned_week=95, earned_month=95)) == 5
    assert points(rule_set, order(5000), MemberContext(earned_day=0, earned_week=280, earned_month=280)) == 20
    assert points(rule_set, order(5000), MemberContext(earned_day=0, earned_week=0, earned_month=490)) == 10
    over = quote_purchase(rule_set, order(5000), MemberContext(earned_day=150))
    assert over.points == 0 and over.capped and kinds(over)[-1] == "cap"
    free = quote_purchase(rule_set, order(5000), MemberContext())
    assert free.points == 50 and not free.capped


def test_caps_apply_to_engagements() -> None:
    rule_set = rules(engagements={"review": 40}, caps={"day": 100})
    quote = quote_engagement(rule_set, "review", MemberContext(earned_day=70), at=T0)
    assert (quote.points, quote.capped) == (30, True)


def test_pending_days() -> None:
    rule_set = rules(pending_days=14)
    assert quote_purchase(rule_set, order(1000), MemberContext()).release_at == T0 + 14 * DAY
    assert quote_purchase(rules(), order(1000), MemberContext()).release_at == T0
    # engagements have no return window
    assert quote_engagement(rule_set, "review", at=T0).release_at == T0


def test_cap_windows() -> None:
    def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
        return int(dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC).timestamp())

    # Wednesday 2024-01-03 12:34:56: day from midnight, week from Monday 2024-01-01, month from the 1st
    assert cap_windows(ts(2024, 1, 3, 12, 34, 56)) == (ts(2024, 1, 3), ts(2024, 1, 1), ts(2024, 1, 1))
    # Friday 2024-03-01: the week began in February
    assert cap_windows(ts(2024, 3, 1, 0, 0, 0)) == (ts(2024, 3, 1), ts(2024, 2, 26), ts(2024, 3, 1))
    # Sunday's last second still belongs to the week from Monday
    assert cap_windows(ts(2024, 6, 2, 23, 59, 59))[1] == ts(2024, 5, 27)
    assert cap_windows(ts(2024, 6, 3))[1] == ts(2024, 6, 3)


# --------------------------------------------------------------------------- engagements


def test_engagements_and_their_reason_codes() -> None:
    rule_set = rules(
        engagements={
            "review": 10,
            "newsletter": 20,
            "referral_referrer": 300,
            "referral_referee": 100,
            "birthday": 250,
            "custom": {"app-install": {"points": 15}, "survey": {"points": 5, "reason": 42}},
        }
    )
    got = {
        kind: (q.points, q.reason)
        for kind in ("review", "newsletter", "referral_referrer", "referral_referee", "birthday")
        for q in [quote_engagement(rule_set, kind, at=T0)]
    }
    assert got == {
        "review": (10, 2),
        "newsletter": (20, 5),
        "referral_referrer": (300, 3),
        "referral_referee": (100, 3),
        "birthday": (250, 4),
    }
    app = quote_engagement(rule_set, "custom", at=T0, event="app-install")
    assert (app.points, app.reason) == (15, 0)
    survey = quote_engagement(rule_set, "custom", at=T0, event="survey")
    assert (survey.points, survey.reason) == (5, 42)
    with pytest.raises(UnknownEvent) as excinfo:
        quote_engagement(rule_set, "custom", at=T0, event="nope")
    assert excinfo.value.event == "nope"
    assert quote_engagement(rules(), "review", at=T0).points == 0  # not configured: nothing


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "location"),
    [
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUR": 1.5}}},
            ("earn", "points_per_unit", "rates", "EUR"),
        ),
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUR": "-1"}}},
            ("earn", "points_per_unit", "rates", "EUR"),
        ),
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1e3"}}},
            ("earn", "points_per_unit", "rates", "EUR"),
        ),
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUX": "1"}}},
            ("earn", "points_per_unit", "rates", "EUX", "[key]"),
        ),
        ({"earn": {"basis": "points_per_unit", "rates": {}}}, ("earn", "points_per_unit", "rates")),
        (
            {"earn": {"basis": "cashback_percent", "percent": "101", "points_per_unit": {"EUR": "1"}}},
            ("earn", "cashback_percent", "percent"),
        ),
        ({"categories": {"coffee": "100.5"}}, ("categories", "coffee")),
        ({"tiers": {"gold": "2.0000000000000000001"}}, ("tiers", "gold")),
        ({"minimum_amount": {"EUR": -1}}, ("minimum_amount", "EUR")),
        ({"pending_days": 366}, ("pending_days",)),
        ({"pending_days": True}, ("pending_days",)),
        ({"excluded_skus": ["A", "A"]}, ("excluded_skus",)),
        ({"excluded_skus": [" A"]}, ("excluded_skus", 0)),
        ({"campaigns": [campaign(multiplier="2"), campaign(bonus=1)]}, ("campaigns",)),
        ({"campaigns": [campaign(end=T0, multiplier="2")]}, ("campaigns", 0)),
        ({"campaigns": [campaign(multiplier="2", bonus=1)]}, ("campaigns", 0)),
        ({"campaigns": [campaign()]}, ("campaigns", 0)),
        ({"caps": {"day": -5}}, ("caps", "day")),
        (
            {"engagements": {"custom": {"x": {"points": 1, "reason": 70000}}}},
            ("engagements", "custom", "x", "reason"),
        ),
        ({"channels": {"kiosk": {"multiplier": "2"}}}, ("channels", "kiosk", "[key]")),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_invalid_rule_sets_name_the_field(change: dict[str, Any], location: tuple[Any, ...]) -> None:
    body: dict[str, Any] = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}, **change}
    with pytest.raises(ValidationError) as excinfo:
        RuleSet.model_validate(body)
    assert location in [tuple(e["loc"]) for e in excinfo.value.errors()]


def test_rule_sets_are_frozen() -> None:
    rule_set = rules()
    with pytest.raises(ValidationError):
        rule_set.pending_days = 3


# --------------------------------------------------------------------------- canonical encoding


def test_canonical_encoding() -> None:
    rule_set = rules(
        earn={"basis": "points_per_unit", "rates": {"USD": "1.50", "EUR": "10.000", "JPY": "0.0000001"}},
        excluded_skus=["B", "A"],
        campaigns=[campaign(name="z", bonus=5), campaign(name="a", multiplier="2.0")],
    )
    text = canonical(rule_set)
    assert text == (
        '{"campaigns":[{"end":1717804800,"multiplier":"2","name":"a","start":1717200000},'
        '{"bonus":5,"end":1717804800,"name":"z","start":1717200000}],'
        '"earn":{"basis":"points_per_unit","rates":{"EUR":"10","JPY":"0.0000001","USD":"1.5"}},'
        '"excluded_skus":["A","B"],"format":1}'
    )
    # the hash is pinned: a change of the encoding would change every rule hash on chain
    assert rule_hash(rule_set).hex() == "fb7e73fc554d10f3120418ee98054d0b25dd081bc64f02a18534a4f1655f5ba3"
    assert parse_canonical(text) == rule_set


def test_defaults_are_left_out_and_format_kept() -> None:
    assert canonical(rules()) == '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1"}},"format":1}'
    explicit = rules(rounding="floor", pending_days=0, caps={}, engagements={"custom": {}}, qualifying=True)
    assert canonical(explicit) == canonical(rules())


def test_non_ascii_names_are_kept_as_utf8() -> None:
    text = canonical(rules(categories={"café": "2"}))
    assert '"café":"2"' in text
    assert parse_canonical(text).categories == {"café": Decimal(2)}


@pytest.mark.parametrize(
    "text",
    [
        '{"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}, "format": 1}',  # spaces
        '{"format":1,"earn":{"basis":"points_per_unit","rates":{"EUR":"1"}}}',  # key order
        '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1.0"}},"format":1}',  # not normal
        '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1"}}}',  # no format
        '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1"}},"format":1,"pending_days":1.0}',  # a float
        '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1"}},"format":1,"rounding":"floor"}',  # default
        "[]",
        "not json",
    ],
)
def test_parse_canonical_refuses_anything_else(text: str) -> None:
    with pytest.raises(NotCanonical):
        parse_canonical(text)


# --------------------------------------------------------------------------- returns


def test_partial_returns_are_cumulative() -> None:
    """10 points for 10.00; returning 3.33, 3.33 and 3.34 takes back 3 (floor 3.33), 3 (floor 6.66 - 3)
    and 4 (10 - 6)."""
    assert return_points(10, 1000, 333) == 3
    assert return_points(10, 1000, 333, already_returned=333) == 3
    assert return_points(10, 1000, 334, already_returned=666) == 4
    assert return_points(10, 1000, 1000) == 10
    assert return_points(10, 1000, 333, "ceil") == 4
    assert return_points(0, 1000, 500) == 0
    assert return_points(7, 0, 0) == 7


@pytest.mark.parametrize(("returned", "before"), [(1001, 0), (1, 1000), (-1, 0), (1, -1)])
def test_returning_more_than_the_order_is_refused(returned: int, before: int) -> None:
    with pytest.raises(InvalidReturn):
        return_points(10, 1000, returned, already_returned=before)


def test_round_points() -> None:
    assert [round_points(Fraction(5, 2), r) for r in ("floor", "ceil", "half_up", "half_even")] == [
        2,
        3,
        3,
        2,
    ]
    assert [round_points(Fraction(7, 2), r) for r in ("floor", "ceil", "half_up", "half_even")] == [
        3,
        4,
        4,
        4,
    ]
    assert [round_points(Fraction(3), r) for r in ("floor", "ceil", "half_up", "half_even")] == [3, 3, 3, 3]


# --------------------------------------------------------------------------- properties

CURRENCIES = ("EUR", "JPY", "KWD", "USD")
SKUS = ("A", "B", "C", "D")
CATEGORIES = ("coffee", "food", "merch")
TIERS = ("member", "silver", "gold")
STORES = ("s1", "s2")


@st.composite
def decimals(draw: st.DrawFn, top: int) -> str:
    """A decimal string from 0 to ``top`` with up to 4 decimals, sometimes with trailing zeros."""
    places = draw(st.integers(0, 4))
    value = Decimal(draw(st.integers(0, top * 10**places))).scaleb(-places)
    return format(value, "f") + draw(st.sampled_from(["", "0"] if places else [""]))


multipliers = decimals(5)
rates = st.fixed_dictionaries({c: decimals(20) for c in CURRENCIES})
earns = st.one_of(
    st.builds(lambda r: {"basis": "points_per_unit", "rates": r}, rates),
    st.builds(
        lambda p, r: {"basis": "cashback_percent", "percent": p, "points_per_unit": r}, decimals(100), rates
    ),
)
names = st.sampled_from


def subsets(values: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=len(values))


@st.composite
def campaigns(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 3))):
        start = T0 + draw(st.integers(-3, 3)) * DAY
        c: dict[str, Any] = {"name": f"c{i}", "start": start, "end": start + draw(st.integers(1, 4)) * DAY}
        if draw(st.booleans()):
            c["multiplier"] = draw(multipliers)
        else:
            c["bonus"] = draw(st.integers(0, 100))
        for target, values in (("tiers", TIERS), ("categories", CATEGORIES), ("channels", ("pos", "online"))):
            chosen = draw(subsets(values))
            if chosen:
                c[target] = chosen
        out.append(c)
    return out


optional_cap = st.none() | st.integers(0, 2_000)


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    override = st.fixed_dictionaries({}, optional={"earn": earns, "multiplier": multipliers})
    body = {
        "earn": draw(earns),
        "rounding": draw(st.sampled_from(["floor", "half_up", "half_even", "ceil"])),
        "minimum_amount": draw(st.dictionaries(st.sampled_from(CURRENCIES), st.integers(0, 2_000))),
        "excluded_skus": draw(subsets(SKUS)),
        "channels": draw(st.dictionaries(st.sampled_from(["pos", "online"]), override)),
        "stores": draw(st.dictionaries(st.sampled_from(STORES), override)),
        "categories": draw(st.dictionaries(st.sampled_from(CATEGORIES), multipliers)),
        "tiers": draw(st.dictionaries(st.sampled_from(TIERS), multipliers)),
        "engagements": {
            "review": draw(st.integers(0, 500)),
            "custom": {"e": {"points": draw(st.integers(0, 500))}},
        },
        "campaigns": draw(campaigns()),
        "caps": {"day": draw(optional_cap), "week": draw(optional_cap), "month": draw(optional_cap)},
        "pending_days": draw(st.integers(0, 30)),
    }
    return RuleSet.model_validate(body)


lines = st.builds(
    Line,
    sku=st.sampled_from(SKUS),
    category=st.none() | st.sampled_from(CATEGORIES),
    quantity=st.integers(1, 5),
    unit_price=st.integers(0, 100_000),
)
orders = st.builds(
    Order,
    channel=st.sampled_from(["pos", "online"]),
    store=st.none() | st.sampled_from((*STORES, "s3")),
    currency=st.sampled_from(CURRENCIES),
    amount=st.integers(0, 1_000_000),
    lines=st.lists(lines, max_size=5).map(tuple),
    at=st.integers(T0 - 4 * DAY, T0 + 8 * DAY),
)
members = st.builds(
    MemberContext,
    tier=st.none() | st.sampled_from((*TIERS, "platinum")),
    earned_day=st.integers(0, 3_000),
    earned_week=st.integers(0, 3_000),
    earned_month=st.integers(0, 3_000),
)


@PROPERTY
@given(rule_sets(), orders, members)
def test_points_are_whole_never_negative_and_within_the_caps(
    rule_set: RuleSet, o: Order, member: MemberContext
) -> None:
    quote = quote_purchase(rule_set, o, member)
    assert type(quote.points) is int and quote.points >= 0
    for cap, earned in (
        (rule_set.caps.day, member.earned_day),
        (rule_set.caps.week, member.earned_week),
        (rule_set.caps.month, member.earned_month),
    ):
        if cap is not None:
            assert quote.points <= max(0, cap - earned)
            if earned + quote.points > cap:
                assert quote.points == 0
    assert quote.release_at == o.at + rule_set.pending_days * DAY
    assert quote.lines and all(x.kind and x.detail for x in quote.lines)


@PROPERTY
@given(rule_sets(), members, st.sampled_from(["review", "custom"]))
def test_engagement_points_are_within_the_caps(rule_set: RuleSet, member: MemberContext, kind: str) -> None:
    quote = quote_engagement(rule_set, kind, member, at=T0, event="e")  # type: ignore[arg-type]
    assert type(quote.points) is int and quote.points >= 0
    for cap, earned in ((rule_set.caps.day, member.earned_day), (rule_set.caps.week, member.earned_week)):
        if cap is not None:
            assert quote.points <= max(0, cap - earned)


@PROPERTY
@given(rule_sets(), orders, members)
def test_same_input_and_rule_hash_give_the_same_points(
    rule_set: RuleSet, o: Order, member: MemberContext
) -> None:
    """The rule set recovered from its canonical text (as anyone reading GET /v1/rules/{hash} would) gives
    the very same quote."""
    recovered = parse_canonical(canonical(rule_set))
    assert rule_hash(recovered) == rule_hash(rule_set)
    assert quote_purchase(recovered, o, member) == quote_purchase(rule_set, o, member)
    assert quote_purchase(rule_set, o, member) == quote_purchase(rule_set, o, member)


def shuffled(value: Any, rnd: Any) -> Any:
    if isinstance(value, dict):
        items = [(k, shuffled(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        items = [shuffled(v, rnd) for v in value]
        rnd.shuffle(items)
        return items
    return value


@PROPERTY
@given(rule_sets(), st.randoms(use_true_random=False))
def test_canonical_round_trip_and_hash_stability(rule_set: RuleSet, rnd: Any) -> None:
    text = canonical(rule_set)
    assert canonical(parse_canonical(text)) == text
    assert parse_canonical(text) == rule_set
    json.loads(text, parse_float=lambda _: pytest.fail("a float in the canonical encoding"))
    assert text.isascii() or "\\u" not in text
    # the same rules given in another order (keys, sets of names, campaigns) hash the same
    again = RuleSet.model_validate(shuffled(rule_set.model_dump(mode="json"), rnd))
    assert canonical(again) == text and rule_hash(again) == rule_hash(rule_set)


@PROPERTY
@given(
    st.integers(0, 10**9),
    st.integers(1, 10**9),
    st.lists(st.integers(0, 10**6), max_size=8),
    st.sampled_from(["floor", "half_up", "half_even", "ceil"]),
)
def test_a_full_return_however_split_takes_back_exactly_what_was_earned(
    earned: int, amount: int, cuts: list[int], rounding: str
) -> None:
    bounds = sorted({0, amount, *(c % (amount + 1) for c in cuts)})
    taken = 0
    for before, after in itertools.pairwise(bounds):
        step = return_points(earned, amount, after - before, rounding, already_returned=before)  # type: ignore[arg-type]
        assert step >= 0
        taken += step
        assert taken <= earned
    assert taken == earned
