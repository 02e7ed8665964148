"""The earning rules: a partner's rule set as data, its canonical encoding and hash, and the pure functions
that turn an order or an engagement into points with a line-by-line explanation.

Nothing here reads a clock, a database or the network: the same rule set and the same input always give the
same points, so anyone holding a rule set (``GET /v1/rules/{hash}``) can recompute any issuance it computed.

**The rule set** (:class:`RuleSet`, validated by pydantic: strict, unknown fields refused, frozen):

- ``earn``: the base rate, either ``points_per_unit`` (points per major unit of each ISO 4217 currency:
  ``{"basis": "points_per_unit", "rates": {"EUR": "1"}}``) or ``cashback_percent`` (a percentage of the
  amount paid, turned into points at a declared rate: ``{"basis": "cashback_percent", "percent": "5",
  "points_per_unit": {"EUR": "100"}}`` gives 5 % back, a point being worth 0.01 EUR; i.e. points =
  amount in major units x percent / 100 x points_per_unit). Amounts arrive in minor units (cents); a
  currency's exponent comes from :data:`MINOR_UNITS` (JPY 0, EUR 2, KWD 3, ...).
- ``rounding``: floor, half_up, half_even or ceil, applied **once**, to the order's total. Every step before
  it is exact rational arithmetic (:class:`fractions.Fraction`; the rule set's decimals convert exactly).
- ``minimum_amount``: per currency, in minor units; a smaller order earns nothing.
- ``excluded_skus``: line items that earn nothing.
- ``channels`` (``pos``, ``online``) and ``stores``: overrides, each a different ``earn`` and/or a
  ``multiplier``. The base rate is the store's ``earn`` if it has one, else the channel's, else the rule
  set's; the channel's and the store's multipliers both apply.
- ``categories``: a multiplier per line item's category (unlisted: 1).
- ``tiers``: a multiplier per member tier (unlisted, or no member: 1).
- ``engagements``: fixed points for a review, a newsletter sign-up, a referral (the referrer's and the
  referee's), a birthday, and custom events (name -> points and an optional reason code).
- ``campaigns``: a window ``[start, end)`` in Unix seconds, optional targets (tiers, categories, channels:
  all must match; a category target matches line items of those categories), and either a ``multiplier``
  (of the matching lines, or of the whole order) or a fixed ``bonus`` (once per order that has a matching
  line, or any order without a category target). Campaigns stack: multipliers multiply, bonuses add.
- ``caps``: the most points a member may earn from this partner (purchases and engagements) per UTC day,
  ISO week (from Monday) and calendar month.
- ``pending_days``: purchase points are pending for this many days (the return window).
- ``qualifying``: whether purchase points count towards tiers.

**A purchase** (:func:`quote_purchase`): with line items, each line's amount is ``quantity x unit_price``,
scaled down pro rata when the lines add up to more than what was paid (an order discount spread over the
lines), never up (what is paid beyond the lines, e.g. shipping or tips, earns nothing). Without line items
the whole amount earns at the base rate (no category). Then::

    points = round( sum over lines not excluded of
                        line amount / 10^exponent x rate x category multiplier x campaign multipliers
                    x channel multiplier x store multiplier x tier multiplier )
             + campaign bonuses,  then reduced to what the caps leave

**A partial return** (:func:`return_points`) takes back points pro rata, cumulatively, so that returns
together never take back more than the purchase earned and a full return takes back exactly that.

**The canonical encoding** (:func:`canonical`): compact JSON (``,`` and ``:`` separators), keys sorted by
code point, UTF-8 without escapes; decimals as strings in plain normal form (``"1.5"``, ``"10"``, never an
exponent, never a float); fields at their defaults left out (so adding an optional rule later does not
change the hash of an existing rule set), except ``format`` (the version of this document's meaning, 1)
which is always there. The rule hash is keccak-256 of its UTF-8 bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal, cast

from eth_utils.crypto import keccak
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ._errors import FieldError, InvalidRequest

__all__ = [
    "ANONYMOUS",
    "CHANNELS",
    "DAY",
    "MAX_AMOUNT",
    "MAX_TIME",
    "MINOR_UNITS",
    "NAME",
    "REASON_BIRTHDAY",
    "REASON_CAMPAIGN",
    "REASON_CUSTOM",
    "REASON_NEWSLETTER",
    "REASON_PURCHASE",
    "REASON_REFERRAL",
    "REASON_REVIEW",
    "Campaign",
    "Caps",
    "CashbackPercent",
    "Channel",
    "Currency",
    "CustomEvent",
    "EngagementKind",
    "Engagements",
    "Explanation",
    "InvalidReturn",
    "Line",
    "MemberContext",
    "Multiplier",
    "NotCanonical",
    "Order",
    "Override",
    "PointsPerUnit",
    "Quote",
    "Rate",
    "Rounding",
    "RuleSet",
    "RuleSetCreate",
    "RulesError",
    "UnknownCurrency",
    "UnknownEvent",
    "canonical",
    "cap_windows",
    "parse_canonical",
    "quote_engagement",
    "quote_purchase",
    "return_points",
    "round_points",
    "rule_hash",
]

DAY = 86_400
#: The ledger's reason codes the rules produce.
REASON_CUSTOM, REASON_PURCHASE, REASON_REVIEW, REASON_REFERRAL = 0, 1, 2, 3
REASON_BIRTHDAY, REASON_NEWSLETTER, REASON_CAMPAIGN = 4, 5, 6

CHANNELS = ("pos", "online")
Channel = Literal["pos", "online"]
Rounding = Literal["floor", "half_up", "half_even", "ceil"]
EngagementKind = Literal[
    "review", "newsletter", "referral_referrer", "referral_referee", "birthday", "custom"
]

#: ISO 4217 minor-unit exponents: 2 unless listed with 0, 3 or 4.
_EXPONENTS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP "
    "GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL "
    "MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN "
    "QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD "
    "TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG",
}
#: Each ISO 4217 currency's minor-unit exponent (cents: 2).
MINOR_UNITS: Mapping[str, int] = {code: e for e, codes in _EXPONENTS.items() for code in codes.split()}

#: The largest amount (minor units), quantity or number of points a rule set or an order may state: 10^15,
#: exact as a JSON number in every client (below 2^53).
MAX_AMOUNT = 10**15
#: Unix seconds up to the end of year 9999.
MAX_TIME = 253_402_300_799


# --------------------------------------------------------------------------- errors


class RulesError(InvalidRequest):
    """An order or event the rules cannot compute (422, naming the request field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, [FieldError(field, message)])


class UnknownCurrency(RulesError):
    """An order in a currency that is not ISO 4217, or that the rule set gives no rate for."""

    def __init__(self, currency: str, message: str) -> None:
        super().__init__("body.currency", message)
        self.currency = currency


class UnknownEvent(RulesError):
    """A custom engagement the rule set does not define."""

    def __init__(self, event: str | None) -> None:
        super().__init__("body.event", f"the rule set defines no custom event {event!r}")
        self.event = event


class InvalidReturn(RulesError):
    """A return of more than the order's amount, or of an order that cannot be returned pro rata."""

    def __init__(self, message: str) -> None:
        super().__init__("body.amount", message)


class NotCanonical(ValueError):
    """A text that does not parse as a rule set, or is not that rule set's canonical encoding."""


# --------------------------------------------------------------------------- the rule set's scalars


def _plain(value: Decimal) -> str:
    """A decimal in plain normal form: no exponent, no trailing zeros (``10``, ``1.5``, ``0``)."""
    text = format(value.normalize(), "f")
    return "0" if value == 0 else text


def _decimal(pattern: str, message: str) -> Any:
    compiled = re.compile(pattern)

    def parse(value: Any) -> Decimal:
        if isinstance(value, Decimal) and value.is_finite():
            text = _plain(value)
        elif isinstance(value, str):
            text = value
        else:
            raise ValueError(message)
        if not compiled.fullmatch(text):
            raise ValueError(message)
        return Decimal(_plain(Decimal(text)))

    return parse


def _decimal_schema(pattern: str, description: str, example: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "description": description, "examples": [example]}
    )


_FRACTION = r"(\.[0-9]{1,18})?"
_RATE = rf"^[0-9]{{1,9}}{_FRACTION}$"
_RATE_TEXT = "a decimal string, 0 to 999999999 with up to 18 decimals"
_MULTIPLIER = rf"^(100(\.0{{1,18}})?|[0-9]{{1,2}}{_FRACTION})$"
_MULTIPLIER_TEXT = "a decimal string, 0 to 100 with up to 18 decimals"
_PLAIN = PlainSerializer(_plain, return_type=str)
#: A rate: points per major currency unit, 0 to 999,999,999.999999999999999999 (a string in JSON).
Rate = Annotated[
    Decimal, BeforeValidator(_decimal(_RATE, _RATE_TEXT)), _PLAIN, _decimal_schema(_RATE, _RATE_TEXT, "1.5")
]
#: A multiplier or percentage: 0 to 100 (a string in JSON).
Multiplier = Annotated[
    Decimal,
    BeforeValidator(_decimal(_MULTIPLIER, _MULTIPLIER_TEXT)),
    _PLAIN,
    _decimal_schema(_MULTIPLIER, _MULTIPLIER_TEXT, "2"),
]
Percent = Multiplier


def _known_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise ValueError(f"{code} is not an ISO 4217 currency")
    return code


#: An ISO 4217 currency code.
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_known_currency),
    WithJsonSchema({"type": "string", "enum": sorted(MINOR_UNITS), "description": "ISO 4217"}),
]
#: A name (SKU, category, store, tier, campaign, event): 1 to 100 characters, no control characters, no
#: leading or trailing space.
NAME = r"^[^\x00-\x20\x7f]([^\x00-\x1f\x7f]{0,98}[^\x00-\x20\x7f])?$"
Name = Annotated[str, Field(pattern=NAME)]
Points = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Time = Annotated[int, Field(ge=0, le=MAX_TIME)]
MinorAmount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]


def _as_tuple(value: Any) -> Any:
    """JSON arrays arrive as lists; the frozen model keeps tuples."""
    return tuple(value) if isinstance(value, list) else value


def _sorted_names(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("the list names something twice")
    return tuple(sorted(value))


#: A set of names, kept sorted (the canonical encoding does not depend on the order they were given in).
Names = Annotated[
    tuple[Name, ...],
    Field(max_length=1000, json_schema_extra={"uniqueItems": True}),
    BeforeValidator(_as_tuple),
    AfterValidator(_sorted_names),
]
#: A target's set of names: at least one (leave the target out to mean every one).
NonEmptyNames = Annotated[
    tuple[Name, ...],
    Field(min_length=1, max_length=1000, json_schema_extra={"uniqueItems": True}),
    BeforeValidator(_as_tuple),
    AfterValidator(_sorted_names),
]
ChannelSet = Annotated[
    tuple[Channel, ...],
    Field(min_length=1, json_schema_extra={"uniqueItems": True}),
    BeforeValidator(_as_tuple),
    AfterValidator(_sorted_names),
]


class _Rules(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------- the rule set


class PointsPerUnit(_Rules):
    """Points per major unit of the currency paid (1 EUR, 1 JPY, 1 KWD)."""

    basis: Literal["points_per_unit"]
    rates: dict[Currency, Rate] = Field(min_length=1, max_length=200, examples=[{"EUR": "1", "USD": "1"}])

    def rate(self, currency: str) -> Fraction:
        if currency not in self.rates:
            raise UnknownCurrency(currency, f"the rule set gives no rate for {currency}")
        return Fraction(self.rates[currency])


class CashbackPercent(_Rules):
    """A percentage of the amount paid, in points: ``amount (major units) x percent / 100 x
    points_per_unit``, where ``points_per_unit`` is how many points one major unit of cash back is worth
    (100 when a point is worth 0.01)."""

    basis: Literal["cashback_percent"]
    percent: Percent
    points_per_unit: dict[Currency, Rate] = Field(min_length=1, max_length=200, examples=[{"EUR": "100"}])

    def rate(self, currency: str) -> Fraction:
        if currency not in self.points_per_unit:
            raise UnknownCurrency(currency, f"the rule set gives no cash-back rate for {currency}")
        return Fraction(self.percent) / 100 * Fraction(self.points_per_unit[currency])


Earn = Annotated[PointsPerUnit | CashbackPercent, Field(discriminator="basis")]


class Override(_Rules):
    """A channel's or a store's difference: another base rate, and/or a multiplier."""

    earn: Earn | None = None
    multiplier: Multiplier = Decimal(1)


class Campaign(_Rules):
    name: Name
    start: Time = Field(description="the first second it applies (Unix time)")
    end: Time = Field(description="the first second it no longer applies")
    tiers: NonEmptyNames | None = Field(
        default=None, description="only members of these tiers (default: all)"
    )
    categories: NonEmptyNames | None = Field(
        default=None, description="only line items of these categories (default: the whole order)"
    )
    channels: ChannelSet | None = Field(default=None, description="only these channels (default: all)")
    multiplier: Multiplier | None = None
    bonus: Points | None = Field(default=None, description="fixed points once per matching order")

    @model_validator(mode="after")
    def _check(self) -> Campaign:
        if self.end <= self.start:
            raise ValueError("a campaign ends after it starts")
        if (self.multiplier is None) == (self.bonus is None):
            raise ValueError("a campaign has either a multiplier or a bonus")
        return self

    def active(self, at: int, channel: str, tier: str | None) -> bool:
        return (
            self.start <= at < self.end
            and (self.channels is None or channel in self.channels)
            and (self.tiers is None or (tier is not None and tier in self.tiers))
        )

    def covers(self, category: str | None) -> bool:
        return self.categories is None or (category is not None and category in self.categories)


class Caps(_Rules):
    """The most points a member earns from the partner per UTC day, ISO week and calendar month."""

    day: Points | None = None
    week: Points | None = None
    month: Points | None = None


class CustomEvent(_Rules):
    points: Points
    reason: int = Field(default=REASON_CUSTOM, ge=0, lt=2**16, description="the ledger's reason code")


class Engagements(_Rules):
    review: Points = 0
    newsletter: Points = 0
    referral_referrer: Points = 0
    referral_referee: Points = 0
    birthday: Points = 0
    custom: dict[Name, CustomEvent] = Field(default_factory=dict, max_length=1000)


class RuleSetCreate(_Rules):
    """Earning rules as a partner writes them (see the module's documentation for what each field means);
    stored as the partner's :class:`RuleSet`."""

    format: Literal[1] = Field(default=1, description="the version of the rules' meaning")
    earn: Earn
    rounding: Rounding = "floor"
    minimum_amount: dict[Currency, MinorAmount] = Field(
        default_factory=dict, max_length=200, description="per currency, in minor units"
    )
    excluded_skus: Names = ()
    channels: dict[Channel, Override] = Field(default_factory=dict)
    stores: dict[Name, Override] = Field(default_factory=dict, max_length=1000)
    categories: dict[Name, Multiplier] = Field(default_factory=dict, max_length=1000)
    tiers: dict[Name, Multiplier] = Field(default_factory=dict, max_length=100)
    engagements: Engagements = Engagements()
    campaigns: Annotated[tuple[Campaign, ...], BeforeValidator(_as_tuple), Field(max_length=200)] = ()
    caps: Caps = Caps()
    pending_days: int = Field(default=0, ge=0, le=365, description="purchase points pending (days)")
    qualifying: bool = Field(default=True, description="purchase points count towards tiers")

    @field_validator("campaigns")
    @classmethod
    def _campaigns(cls, value: tuple[Campaign, ...]) -> tuple[Campaign, ...]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("two campaigns have the same name")
        return tuple(sorted(value, key=lambda c: c.name))


class RuleSet(RuleSetCreate):
    """A partner's earning rules: what is hashed and stored."""

    partner_id: int | None = Field(
        default=None, ge=0, lt=2**32, description="the partner whose rules they are"
    )

    @classmethod
    def of(cls, rules: RuleSetCreate, partner_id: int) -> RuleSet:
        """``rules`` as ``partner_id``'s."""
        return cls(**dict(rules), partner_id=partner_id)


# --------------------------------------------------------------------------- canonical encoding


def _check_no_float(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("a rule set's encoding holds no floats")
    if isinstance(value, dict):
        for item in value.values():
            _check_no_float(item)
    elif isinstance(value, list):
        for item in value:
            _check_no_float(item)


def canonical(rules: RuleSet) -> str:
    """The canonical JSON text of ``rules`` (see the module's documentation)."""
    body = rules.model_dump(mode="json", exclude_defaults=True)
    body["format"] = rules.format
    _check_no_float(body)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def rule_hash(rules: RuleSet) -> bytes:
    """keccak-256 of the canonical encoding's UTF-8 bytes: the ``ruleHash`` on chain."""
    return bytes(keccak(canonical(rules).encode()))


def _no_float(text: str) -> Any:
    raise NotCanonical(f"a rule set holds no floats ({text})")


def parse_canonical(text: str) -> RuleSet:
    """The rule set ``text`` encodes; :class:`NotCanonical` unless ``text`` is exactly its canonical
    encoding (so ``canonical(parse_canonical(t)) == t``)."""
    try:
        body = json.loads(text, parse_float=_no_float, parse_constant=_no_float)
        rules = RuleSet.model_validate(body)
    except (ValueError, TypeError) as exc:  # json's and pydantic's errors are ValueErrors
        raise NotCanonical(f"not a rule set: {exc}") from None
    if canonical(rules) != text:
        raise NotCanonical("the text is a rule set but not its canonical encoding")
    return rules


# --------------------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True, slots=True)
class Line:
    """A line item: ``quantity`` x ``unit_price`` (minor units)."""

    sku: str
    category: str | None
    quantity: int
    unit_price: int

    def __post_init__(self) -> None:
        if not 0 < self.quantity <= MAX_AMOUNT or not 0 <= self.unit_price <= MAX_AMOUNT:
            raise RulesError("body.lines", "a line has a positive quantity and a unit price >= 0")

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class Order:
    """A purchase: ``amount`` is what was paid, in minor units of ``currency``; ``at`` Unix seconds."""

    channel: str
    store: str | None
    currency: str
    amount: int
    lines: tuple[Line, ...] = ()
    at: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= MAX_AMOUNT:
            raise RulesError("body.amount", "an amount is 0 or more (minor units)")
        if self.at < 0:
            raise RulesError("body.at", "a time is 0 or more (Unix seconds)")


@dataclass(frozen=True, slots=True)
class MemberContext:
    """The member a quote is for: its tier (None: none known) and the points it already earned from the
    partner in the current UTC day, ISO week and calendar month (:func:`cap_windows`; the caller sums
    them)."""

    tier: str | None = None
    earned_day: int = 0
    earned_week: int = 0
    earned_month: int = 0


#: No member known: no tier multiplier; caps count from zero.
ANONYMOUS = MemberContext()


@dataclass(frozen=True, slots=True)
class Explanation:
    """One step of a computation. ``points``: what the step contributes or the running total after it,
    exact (a decimal, or ``n/d`` when no finite decimal is)."""

    kind: str
    detail: str
    points: str


@dataclass(frozen=True, slots=True)
class Quote:
    """Whole points >= 0, due at ``release_at`` (pending until then), for the ledger's ``reason``."""

    points: int
    release_at: int
    reason: int
    lines: tuple[Explanation, ...]
    capped: bool

    def explanation(self) -> list[dict[str, str]]:
        """The computation step by step, as an operation's ``detail`` keeps it (JSON)."""
        return [{"kind": x.kind, "detail": x.detail, "points": x.points} for x in self.lines]


def cap_windows(at: int) -> tuple[int, int, int]:
    """The starts of ``at``'s UTC day, ISO week (Monday) and calendar month (Unix seconds)."""
    days = at // DAY
    day_start = days * DAY
    week_start = (days - (days + 3) % 7) * DAY  # 1970-01-01 was a Thursday (weekday 3 from Monday)
    date = dt.datetime.fromtimestamp(at, dt.UTC)
    month_start = int(dt.datetime(date.year, date.month, 1, tzinfo=dt.UTC).timestamp())
    return day_start, week_start, month_start


# --------------------------------------------------------------------------- computation


def _text(value: Fraction) -> str:
    """Exact: a finite decimal when there is one, else ``n/d``."""
    d = value.denominator
    twos = fives = 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    return _plain(Decimal(value.numerator * 10**places // value.denominator).scaleb(-places))


def round_points(value: Fraction, rounding: Rounding) -> int:
    """``value`` (>= 0) rounded to whole points."""
    if rounding == "floor":
        return value.numerator // value.denominator
    if rounding == "ceil":
        return -(-value.numerator // value.denominator)
    if rounding == "half_up":
        return (value + Fraction(1, 2)).__floor__()
    return round(value)  # half to even


class _Explainer:
    def __init__(self) -> None:
        self.lines: list[Explanation] = []

    def __call__(self, kind: str, detail: str, points: Fraction | int) -> None:
        self.lines.append(Explanation(kind, detail, _text(Fraction(points))))


def _cap(points: int, caps: Caps, member: MemberContext, say: _Explainer) -> tuple[int, bool]:
    capped = False
    for window, cap, earned in (
        ("day", caps.day, member.earned_day),
        ("week", caps.week, member.earned_week),
        ("month", caps.month, member.earned_month),
    ):
        if cap is None:
            continue
        room = max(0, cap - earned)
        if points > room:
            points, capped = room, True
            say("cap", f"cap of {cap} per {window}, {earned} earned already: {room} left", points)
    return points, capped


def _multiplier(value: Decimal) -> Fraction:
    return Fraction(value)


def quote_purchase(rules: RuleSet, order: Order, member: MemberContext = ANONYMOUS) -> Quote:
    """The points ``order`` earns under ``rules`` for ``member``, explained line by line."""
    say = _Explainer()
    exponent = MINOR_UNITS.get(order.currency)
    if exponent is None:
        raise UnknownCurrency(order.currency, f"{order.currency} is not an ISO 4217 currency")
    channel = rules.channels.get(cast(Channel, order.channel))
    store = rules.stores.get(order.store) if order.store is not None else None
    release_at = order.at + rules.pending_days * DAY
    if store is not None and store.earn is not None:
        earn, source = store.earn, f"store {order.store}"
    elif channel is not None and channel.earn is not None:
        earn, source = channel.earn, f"channel {order.channel}"
    else:
        earn, source = rules.earn, "base"
    rate = earn.rate(order.currency)
    unit = Fraction(rate, 10**exponent)  # points per minor unit
    say("rate", f"{_text(rate)} points per {order.currency} ({source}; {exponent} decimals)", rate)
    minimum = rules.minimum_amount.get(order.currency, 0)
    if order.amount < minimum:
        say("minimum", f"amount {order.amount} is below the minimum {minimum}: nothing earned", 0)
        return Quote(0, release_at, REASON_PURCHASE, tuple(say.lines), False)
    campaigns = [c for c in rules.campaigns if c.active(order.at, order.channel, member.tier)]
    multipliers = [c for c in campaigns if c.multiplier is not None]

    total = Fraction(0)
    counted: list[Line] = []
    if order.lines:
        lines_total = sum(line.amount for line in order.lines)
        scale = Fraction(1) if lines_total <= order.amount else Fraction(order.amount, lines_total)
        if scale != 1:
            say(
                "discount",
                f"lines total {lines_total}, paid {order.amount}: each line counts x{_text(scale)}",
                0,
            )
        for line in order.lines:
            label = f"{line.sku} ({line.category or 'no category'}): {line.quantity} x {line.unit_price}"
            if line.sku in rules.excluded_skus:
                say("excluded", f"{label}: SKU excluded", 0)
                continue
            counted.append(line)
            points = line.amount * scale * unit
            factors = [f"base {_text(points)}"]
            category = rules.categories.get(line.category) if line.category is not None else None
            if category is not None:
                points *= _multiplier(category)
                factors.append(f"x{_plain(category)} category")
            for c in multipliers:
                if c.covers(line.category):
                    assert c.multiplier is not None
                    points *= _multiplier(c.multiplier)
                    factors.append(f"x{_plain(c.multiplier)} campaign {c.name}")
            say("line", f"{label}: {', '.join(factors)}", points)
            total += points
    else:
        total = order.amount * unit
        factors = [f"base {_text(total)}"]
        for c in multipliers:
            if c.categories is None:
                assert c.multiplier is not None
                total *= _multiplier(c.multiplier)
                factors.append(f"x{_plain(c.multiplier)} campaign {c.name}")
        say("amount", f"{order.amount} (no line items): {', '.join(factors)}", total)
    for name, override in (("channel", channel), ("store", store)):
        if override is not None and override.multiplier != 1:
            total *= _multiplier(override.multiplier)
            where = order.channel if name == "channel" else order.store
            say(name, f"x{_plain(override.multiplier)} for {name} {where}", total)
    tier = rules.tiers.get(member.tier) if member.tier is not None else None
    if tier is not None:
        total *= _multiplier(tier)
        say("tier", f"x{_plain(tier)} for tier {member.tier}", total)
    whole = round_points(total, rules.rounding)
    say("rounding", f"{_text(total)} rounded ({rules.rounding})", whole)
    for c in campaigns:
        if c.bonus is not None and (c.categories is None or any(c.covers(x.category) for x in counted)):
            whole += c.bonus
            say("bonus", f"+{c.bonus} campaign {c.name}", whole)
    whole, capped = _cap(whole, rules.caps, member, say)
    return Quote(whole, release_at, REASON_PURCHASE, tuple(say.lines), capped)


_ENGAGEMENT_REASONS = {
    "review": REASON_REVIEW,
    "newsletter": REASON_NEWSLETTER,
    "referral_referrer": REASON_REFERRAL,
    "referral_referee": REASON_REFERRAL,
    "birthday": REASON_BIRTHDAY,
}


def quote_engagement(
    rules: RuleSet,
    kind: EngagementKind,
    member: MemberContext = ANONYMOUS,
    *,
    at: int,
    event: str | None = None,
) -> Quote:
    """The fixed points of an engagement (``event``: a custom event's name), released at once (no return
    window), under the caps; tiers and campaigns do not apply."""
    say = _Explainer()
    if kind == "custom":
        custom = rules.engagements.custom.get(event) if event is not None else None
        if custom is None:
            raise UnknownEvent(event)
        points, reason = custom.points, custom.reason
        say("engagement", f"custom event {event}: {points} points", points)
    else:
        points, reason = getattr(rules.engagements, kind), _ENGAGEMENT_REASONS[kind]
        say("engagement", f"{kind}: {points} points", points)
    points, capped = _cap(points, rules.caps, member, say)
    return Quote(points, at, reason, tuple(say.lines), capped)


def return_points(
    earned: int,
    order_amount: int,
    returned_amount: int,
    rounding: Rounding = "floor",
    *,
    already_returned: int = 0,
) -> int:
    """The points to take back when ``returned_amount`` more of an order of ``order_amount`` (minor units)
    that earned ``earned`` points is returned, ``already_returned`` having been returned before.

    Cumulative: the points taken back after a return are ``round(earned x returned so far / order_amount)``
    (``rounding``, floor by default: the member keeps the fraction), and each return takes the difference
    from what the earlier ones took. Rounding is monotone, so no return takes a negative amount; returns
    together take back at most ``earned``, and exactly ``earned`` once the whole amount is returned.
    An order of amount 0 has nothing to share pro rata: a return of it takes back every point (call it
    once: the amounts cannot tell a second return from the first)."""
    if already_returned < 0 or returned_amount < 0 or already_returned + returned_amount > order_amount:
        raise InvalidReturn(
            f"returns of {already_returned} + {returned_amount} exceed the order's amount {order_amount}"
        )
    if earned < 0:
        raise ValueError("earned points are >= 0")
    if order_amount == 0:
        return earned if already_returned == 0 else 0

    def taken(returned: int) -> int:
        return round_points(Fraction(earned * returned, order_amount), rounding)

    return taken(already_returned + returned_amount) - taken(already_returned)
