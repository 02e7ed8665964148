"""The demo coalition that ``loyalty up`` seeds in dev mode: a coffee chain, an airline and a hotel group with
a year of activity, written through the service's own routes so that the data is what a real coalition has.

Why through the routes. The seeding talks to the app (an in-process ``TestClient``) with API keys made by the
admin API, exactly as partners' tills and an admin's scripts do: partners are onboarded as coalition
operations (their operator keys made in the keystore), rule sets, rewards and prices are created and put in
force, members are enrolled (custodial and self custody) and linked with their one-time link codes, and
purchases, engagements, returns, redemptions and refunds go into the outbox; the batchers send it and the
ledger confirms it, the indexer mirrors it, the scheduled jobs grant a birthday and sweep expired points.
Every figure the pages show comes from that write path, and ``loyalty up`` exercises it end to end. Only
what no route may do is done with the service's own functions: the first admin key (as ``loyalty apikey
create`` makes it) and the custodial members' sessions (a passkey sign-in needs a browser's authenticator;
a self-custody member signs in with Sign-In with Ethereum through the route).

Time. The months of history are produced by moving the chain's clock (``evm_increaseTime`` on anvil and other
dev nodes, ``testing_timeTravel`` on eth-tester) while the app, the batchers and the jobs read that same
clock (:class:`ChainClock`): pending points are released, a campaign starts and ends, a birthday comes round
and the oldest points expire, each when the chain says so. ``loyalty up``'s own anvil starts its genesis that
many months in the past, so the timeline ends at the present (``ends_now``); on another chain it ends that
many months in the chain's future and the service's clock follows the chain's (see ``api/_up.py``).

The timeline: months of 30 days (as many as points stay valid, plus one, so that the first month's points
have expired by the end; at most :data:`MAX_MONTHS`), three days in each (the 2nd, 11th and 20th)::

    setup     the partners onboarded, their keys, profiles, prices, rule sets and rewards; Ada (self custody,
              the coffee chain), Bo (custodial, the hotel group) and Cy (custodial, the coffee chain)
              enrolled; Ada linked to the airline and Bo to the coffee chain with their link codes
    month 0   newsletter sign-ups; Ada refers Bo (released by Bo's first coffee)
    monthly   coffee for Ada (three visits), Bo (one) and Cy (months 0 and 1 only: then he stops, and his
              points expire); flights for Ada (months 1, 4, 7, 10; pending two days), stays for Bo (months
              2, 5, 8, 11; pending one day); the other members' purchases
    month 1   Ada reviews the coffee chain          month 3   the pastry campaign (pastries count three times)
    month 3   Ada redeems a free latte (her signed consent)
    month 4   a flight returned in part while its points are pending (cancelled off chain); Bo's birthday
    month 5   part of a hotel stay returned after its points were issued (a reversal on chain)
    month 6   the coffee chain's rule set v2 and a new price; Bo redeems a late checkout with a till code;
              every partner's open position settled
    month 7   the hotel refunds part of Bo's redemption
    month 9   Ada redeems a lounge pass         month 10  Bo redeems a pastry box at the coffee chain
    month 12+ the sweeper turns the points of the first month into expiry entries

``scale`` (``LOYALTY_DEMO_SCALE``) sets how many other members there are (nine at 1, none at 0) and so how
much activity; the named members' story is always there. Randomness is seeded: the demo is the same each
time.

Errors (an :class:`~api._errors.ApiError`, as every error raised on purpose in ``api``)::

    DemoError      the service refused a step of the seeding (its problem's detail is quoted)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chain._signer import LOCAL_CHAIN_IDS, dev_account

from ._batcher import Batcher
from ._errors import ApiError
from ._keys import create_key
from ._sessions import open_session
from ._siwe import SiweMessage
from ._tables import Passkey

__all__ = [
    "DAY",
    "DEMO_NAMES",
    "MAX_MONTHS",
    "MONTH",
    "ChainClock",
    "DemoError",
    "DemoMember",
    "DemoPartner",
    "DemoRuntime",
    "DemoState",
    "MemberSignIn",
    "demo_months",
    "demo_span",
    "seed_demo",
    "sign_in_members",
]

logger = logging.getLogger(__name__)

DAY: Final = 24 * 3600
#: A month of the demo's timeline.
MONTH: Final = 30 * DAY
#: The longest timeline the demo plays (a validity longer than this leaves the demo without an expiry).
MAX_MONTHS: Final = 24
#: Days of each month on which something happens.
STEP_DAYS: Final = (2, 11, 20)
#: Days after the last month at which the timeline ends (the last sweep).
END_DAYS: Final = 3
#: Anvil dev accounts the demo's self-custody members use (0 is the service's key): Ada's, then the others'.
ADA_DEV_ACCOUNT: Final = 5
OTHERS_DEV_ACCOUNTS: Final = 10
#: How many other members there are at ``scale`` 1, and their first names.
OTHERS_PER_SCALE: Final = 9
DEMO_NAMES: Final = (
    "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Liv", "Max", "Ned", "Oona", "Pia", "Quin", "Rui",
    "Sol", "Tam", "Uma", "Vic", "Wes", "Xia", "Yan", "Zoe", "Ari", "Bea", "Cal", "Dot", "Eva", "Fin", "Gil",
    "Hugo", "Ines", "Jan", "Kim", "Lou", "Mia", "Noa", "Oli", "Pat", "Rae", "Sam", "Ted", "Val", "Wil", "Yul",
)  # fmt: skip
#: A batcher that is not idle after this many steps in a row is stuck (the demo's steps need a few).
MAX_BATCHER_STEPS: Final = 100
#: Wei a partner's new operator key receives for gas on a local chain.
OPERATOR_FUNDING: Final = 100 * 10**18


class DemoError(ApiError):
    """The service refused a step of the demo's seeding (the problem's detail is quoted)."""


# --------------------------------------------------------------------------- the chain's clock


class ChainClock:
    """The chain's own clock (the latest block's timestamp), which the demo moves forward.

    Called, it is the clock the seeding's app, batchers and jobs run on, so that what they compute (release
    times, campaign windows, consent deadlines, the sweeper's "expired") agrees with the blocks they write.
    Between two moves it is the latest block's time read then, plus the seconds since (a dev node's clock
    runs on at the wall clock's pace; eth-tester's more slowly, never by the days between two moves), so
    that asking the time costs no round trip to the node.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self._read: tuple[float, float] | None = None

    def __call__(self) -> float:
        if self._read is None:
            return self.latest()
        at, read_at = self._read
        return at + (time.monotonic() - read_at)

    def latest(self) -> float:
        """The latest block's timestamp (read from the node)."""
        timestamp = float(self.w3.eth.get_block("latest")["timestamp"])
        self._read = (timestamp, time.monotonic())
        return timestamp

    def advance_to(self, timestamp: int) -> None:
        """Mines a block at ``timestamp`` (about: a node adds the milliseconds the call took) unless the
        chain is there already; the clock then runs on from it."""
        latest = int(self.latest())
        if timestamp <= latest:
            return
        if isinstance(self.w3.provider, EthereumTesterProvider):
            self._request("testing_timeTravel", [timestamp])
        else:
            self._request("evm_increaseTime", [timestamp - latest])
            self._request("evm_mine", [])
        self.latest()

    def _request(self, method: str, params: list[Any]) -> None:
        answer = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        error = answer.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise DemoError(f"the chain cannot move its clock ({method}: {message})")


# --------------------------------------------------------------------------- what the demo is made of


def demo_months(epoch_length_s: int, validity_epochs: int) -> int:
    """The timeline's months: the points' validity in months, plus one (at most :data:`MAX_MONTHS`)."""
    return min(math.ceil(epoch_length_s * validity_epochs / MONTH) + 1, MAX_MONTHS)


def demo_span(epoch_length_s: int, validity_epochs: int) -> int:
    """Seconds from the timeline's start (the deployment) to its end."""
    return demo_months(epoch_length_s, validity_epochs) * MONTH + END_DAYS * DAY


@dataclass(frozen=True, slots=True)
class _PartnerSpec:
    id: int
    slug: str
    name: str
    spend_at: str
    website: str
    #: (issue price, redeem price) per point, in EUR
    price: tuple[str, str]
    #: (name, description, points)
    rewards: tuple[tuple[str, str, int], ...]


COFFEE = _PartnerSpec(
    1,
    "coffee",
    "Bean There Coffee",
    "every café and the app",
    "https://beanthere.example",
    ("0.010", "0.008"),
    (
        ("Free latte", "Any size, any milk", 150),
        ("Pastry box", "Six of the day's pastries", 400),
        ("Bag of beans", "250 g of this month's roast", 900),
    ),
)
AIRLINE = _PartnerSpec(
    2,
    "airline",
    "Skyline Air",
    "flights, seat upgrades and lounges",
    "https://skyline.example",
    ("0.012", "0.009"),
    (
        ("Lounge pass", "One visit to any Skyline lounge", 2000),
        ("Seat upgrade", "One flight in the next cabin up", 5000),
    ),
)
HOTEL = _PartnerSpec(
    3,
    "hotel",
    "Harbour Hotels",
    "stays, late checkout and the spa",
    "https://harbour.example",
    ("0.011", "0.009"),
    (
        ("Late checkout", "Stay until 4 pm", 800),
        ("Spa afternoon", "Two hours for two", 3000),
        ("Free night", "A standard room, any hotel", 12000),
    ),
)
PARTNERS: Final = (COFFEE, AIRLINE, HOTEL)
#: What each partner may issue.
ALLOWANCE: Final = 100_000_000


def _coffee_rules(t0: int, version: int) -> dict[str, Any]:
    return {
        "earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}},
        "categories": {"coffee": "2" if version == 1 else "3"},
        "campaigns": [
            {
                "name": "pastry-month",
                "start": t0 + 3 * MONTH,
                "end": t0 + 3 * MONTH + 28 * DAY,
                "categories": ["pastry"],
                "multiplier": "3",
            }
        ],
        "engagements": {
            "review": 20 if version == 1 else 25,
            "newsletter": 30,
            "referral_referrer": 50,
            "referral_referee": 25,
            "birthday": 100,
        },
    }


AIRLINE_RULES: Final[dict[str, Any]] = {
    "earn": {"basis": "points_per_unit", "rates": {"EUR": "5"}},
    "pending_days": 2,
}
HOTEL_RULES: Final[dict[str, Any]] = {
    "earn": {"basis": "cashback_percent", "percent": "10", "points_per_unit": {"EUR": "100"}},
    "pending_days": 1,
    "engagements": {"review": 50},
}

#: Ada's flights (month: EUR cents) and Bo's stays.
ADA_FLIGHTS: Final = {1: 24_000, 4: 31_000, 7: 18_000, 10: 52_000}
BO_STAYS: Final = {2: 35_000, 5: 42_000, 8: 28_000, 11: 61_000}
#: What the other members buy at the coffee chain: (sku, category, unit price in cents).
COFFEE_MENU: Final = (
    ("LATTE", "coffee", 350),
    ("ESPRESSO", "coffee", 220),
    ("FLAT-WHITE", "coffee", 380),
    ("CROISSANT", "pastry", 250),
    ("MUFFIN", "pastry", 300),
    ("WATER", "drinks", 150),
)


# --------------------------------------------------------------------------- what is kept


@dataclass(frozen=True, slots=True)
class DemoPartner:
    id: int
    name: str
    #: the partner's API key (dev mode: shown on the console)
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DemoMember:
    name: str
    member_id: str
    custody: Literal["self", "custodial"]
    address: str
    #: the partner that enrolled the member, and its customer id there
    partner_id: int
    customer_id: str
    #: a self-custody member's anvil dev account (``None``: a key that was not kept)
    dev_account: int | None = None


@dataclass(slots=True)
class DemoState:
    """What the demo seeded, kept in the state directory's ``demo.json`` (dev mode only; its keys are the
    demo's, shown on the console at every start). ``state`` is ``seeding`` from the first write of the
    seeding until it is done: a run that finds it so knows the seeding was interrupted."""

    ledger: str
    chain_id: int
    state: Literal["seeding", "seeded"] = "seeding"
    admin_key: str = field(default="", repr=False)
    auditor_key: str = field(default="", repr=False)
    partners: list[DemoPartner] = field(default_factory=list)
    members: list[DemoMember] = field(default_factory=list)
    months: int = 0
    #: the chain's time when the seeding ended
    seeded_at: int = 0

    def member(self, name: str) -> DemoMember | None:
        return next((m for m in self.members if m.name == name), None)

    def partner_key(self, partner_id: int) -> str:
        return next(p.key for p in self.partners if p.id == partner_id)

    def write(self, path: Path) -> None:
        """Writes the file atomically, readable by its owner only (it holds the demo's keys)."""
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(self), out, indent=2)
            out.write("\n")
        os.replace(temporary, path)

    @classmethod
    def read(cls, path: Path) -> DemoState | None:
        """The state in ``path``; ``None`` when there is no file."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DemoError(f"cannot read the demo's state {path}: {exc}") from None
        try:
            return cls(
                ledger=raw["ledger"],
                chain_id=raw["chain_id"],
                state=raw["state"],
                admin_key=raw["admin_key"],
                auditor_key=raw["auditor_key"],
                partners=[DemoPartner(**p) for p in raw["partners"]],
                members=[DemoMember(**m) for m in raw["members"]],
                months=raw["months"],
                seeded_at=raw["seeded_at"],
            )
        except (KeyError, TypeError) as exc:
            raise DemoError(f"the demo's state {path} is not one this version wrote ({exc})") from None


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True, slots=True)
class DemoRuntime:
    """What the seeding runs on (``api/_up.py`` builds it)."""

    #: the app, built with ``clock``
    client: TestClient
    engine: Engine
    clock: ChainClock
    #: the ledger's address and chain
    ledger: str
    chain_id: int
    #: a partner's batcher (signing with its operator key, running on ``clock``); made once per partner
    batcher: Callable[[int], Batcher]
    #: brings the mirror up to the chain's head
    sync: Callable[[], object]
    #: runs the scheduled jobs once, at ``clock``'s time; what each did (``Jobs.run_once``)
    jobs: Callable[[], Mapping[str, int]]
    session_ttl_s: int
    #: where progress is told (one short line at a time)
    progress: Callable[[str], None] = lambda _: None


@dataclass(slots=True)
class _Person:
    member: DemoMember
    #: the key of a self-custody member (signs SIWE messages and consents)
    account: LocalAccount | None
    #: the partner whose customer the member mainly is
    home: _PartnerSpec
    #: the last month the member buys anything
    active_until: int


def seed_demo(
    runtime: DemoRuntime,
    *,
    scale: float,
    months: int,
    ends_now: bool,
    state_file: Path | None = None,
) -> DemoState:
    """Seeds the demo coalition (see the module docstring) and returns what it made, ``state`` ``seeded``.

    ``ends_now``: the chain's clock was started ``demo_span`` in the past, and the timeline ends at the
    present; otherwise it ends ``demo_span`` after the deployment. ``state_file`` is written as soon as
    the seeding starts (``seeding``) and whenever keys are made, so an interrupted seeding leaves a trace.
    """
    seeding = _Seeding(runtime, scale=scale, months=months, state_file=state_file)
    seeding.run(ends_now=ends_now)
    return seeding.state


class _Seeding:
    def __init__(self, runtime: DemoRuntime, *, scale: float, months: int, state_file: Path | None) -> None:
        self.rt = runtime
        self.months = months
        self.extras = min(round(OTHERS_PER_SCALE * scale), len(DEMO_NAMES))
        self.rng = random.Random(14)
        self.state = DemoState(ledger=runtime.ledger, chain_id=runtime.chain_id, months=months)
        self.state_file = state_file
        self.tokens: dict[str, str] = {}
        self.people: dict[str, _Person] = {}
        self.rewards: dict[tuple[int, str], int] = {}
        self.batchers: dict[int, Batcher] = {}
        self.t0 = 0
        self.chain_id = runtime.chain_id
        self.local = runtime.chain_id in LOCAL_CHAIN_IDS
        #: Bo's late checkout (refunded in part a month later)
        self.bo_redemption: str | None = None
        self._persist()

    # ------------------------------------------------------------------ the story

    def run(self, *, ends_now: bool) -> None:
        rt = self.rt
        self.t0 = int(rt.clock())
        rt.progress("seeding the demo coalition: partners, keys, rules, rewards, members")
        self._setup()
        for month in range(self.months):
            rt.progress(f"seeding the demo coalition: month {month + 1} of {self.months}")
            for day in STEP_DAYS:
                self._step(month, day)
        end = self.t0 + self.months * MONTH + END_DAYS * DAY
        if ends_now:
            end = max(end, int(time.time()))
        rt.clock.advance_to(end)
        self._settle_time()
        self.state.state = "seeded"
        self.state.seeded_at = int(rt.clock())
        self._persist()

    def _setup(self) -> None:
        rt = self.rt
        with Session(rt.engine) as db, db.begin():
            admin = create_key(
                db, role="admin", name="demo admin (loyalty up)", partner_id=None, now=self._now()
            )
        self.tokens["admin"] = admin.token
        self.state.admin_key = admin.token
        for spec in PARTNERS:
            self._post(
                "admin",
                "/v1/admin/partners",
                {
                    "partner_id": spec.id,
                    "name": spec.name,
                    "operator": "generate",
                    "allowance": ALLOWANCE,
                    "can_issue": True,
                    "can_accept": True,
                },
                expect_state="confirmed",
            )
        rt.sync()
        auditor = self._post("admin", "/v1/admin/api-keys", {"role": "auditor", "name": "demo auditor"})
        self.tokens["auditor"] = self.state.auditor_key = auditor["token"]
        for spec in PARTNERS:
            key = self._post(
                "admin",
                "/v1/admin/api-keys",
                {"role": "partner", "name": f"{spec.name} till", "partner_id": spec.id},
            )
            self.tokens[spec.slug] = key["token"]
            self.state.partners.append(DemoPartner(spec.id, spec.name, key["token"]))
            self._request(
                "PUT",
                "admin",
                f"/v1/partners/{spec.id}/profile",
                {"name": spec.name, "spend_at": spec.spend_at, "website": spec.website},
            )
            self._price(spec, *spec.price)
            self._rules(spec, _rules_of(spec, self.t0, version=1))
            for name, description, points in spec.rewards:
                reward = self._post(
                    spec.slug,
                    f"/v1/partners/{spec.id}/rewards",
                    {"name": name, "description": description, "points_price": points},
                )
                self.rewards[(spec.id, name)] = reward["id"]
        self._persist()
        self.batchers = {spec.id: rt.batcher(spec.id) for spec in PARTNERS}
        self._enrol_cast()

    def _enrol_cast(self) -> None:
        ada_account = dev_account(self.chain_id, ADA_DEV_ACCOUNT) if self.local else _random_account()
        self._enrol("Ada", COFFEE, "ada", ada_account, months=self.months, email="ada@example.com")
        self._enrol("Bo", HOTEL, "bo", None, months=self.months, email="bo@example.com")
        self._enrol("Cy", COFFEE, "cy", None, months=2)
        homes = (COFFEE, AIRLINE, HOTEL)
        for index in range(self.extras):
            name = DEMO_NAMES[index]
            account = None
            if index % 3 == 2:
                account = (
                    dev_account(self.chain_id, OTHERS_DEV_ACCOUNTS + index)
                    if self.local
                    else _random_account()
                )
            until = self.months if index % 4 else self.rng.choice((3, 5, 8))
            self._enrol(name, homes[index % 3], name.lower(), account, months=until)
        # Ada joins the airline, Bo the coffee chain (his birthday comes round in month 4): each hands the
        # partner a one-time link code made in their own session
        self._link("Ada", AIRLINE, "ada")
        birthday = dt.datetime.fromtimestamp(self.t0 + 4 * MONTH + 11 * DAY, dt.UTC).date()
        self._link("Bo", COFFEE, "bo", birthday=f"1990-{birthday.month:02d}-{birthday.day:02d}")

    def _step(self, month: int, day: int) -> None:
        rt = self.rt
        rt.clock.advance_to(self.t0 + month * MONTH + day * DAY)
        self._settle_time()  # pending points whose time came, the birthday, the sweeper
        first = (month, day) == (0, STEP_DAYS[0])
        if first:
            for name in ("Ada", "Bo"):
                self._engage(COFFEE, name, "newsletter")
            self._engage(COFFEE, "Bo", "referral", referrer="Ada")
        if (month, day) == (1, 11):
            self._engage(COFFEE, "Ada", "review", engagement_id="review-ada-1")
        if (month, day) == (6, 2):
            self._rules(COFFEE, _coffee_rules(self.t0, version=2))
            self._price(COFFEE, "0.011", "0.008")
        self._coffee(month, day)
        if day == STEP_DAYS[0] and month in ADA_FLIGHTS:
            self._purchase(AIRLINE, "Ada", f"flight-ada-{month}", ADA_FLIGHTS[month], channel="online")
            if month == 4:  # changed her mind about one leg: 30 % back while the points are pending
                self._return(AIRLINE, f"flight-ada-{month}", "flight-ada-4-r1", ADA_FLIGHTS[month] * 3 // 10)
        if day == STEP_DAYS[0] and month in BO_STAYS:
            self._purchase(HOTEL, "Bo", f"stay-bo-{month}", BO_STAYS[month])
        if (month, day) == (5, 11):  # one night of three refunded after the points were issued
            self._return(HOTEL, "stay-bo-5", "stay-bo-5-r1", BO_STAYS[5] // 3)
        self._others_travel(month, day)
        if (month, day) == (3, 20):
            self._redeem_signed("Ada", COFFEE, "Free latte")
        if (month, day) == (6, 20):
            self.bo_redemption = self._redeem_code("Bo", HOTEL, "Late checkout")
            self._drain()
            self._settle_all()
        if (month, day) == (7, 2) and self.bo_redemption is not None:
            self._post(
                HOTEL.slug,
                f"/v1/redemptions/{self.bo_redemption}/refunds",
                {"refund_id": "refund-bo-7", "amount": 400},
            )
        if (month, day) == (9, 11):
            self._redeem_signed("Ada", AIRLINE, "Lounge pass")
        if (month, day) == (10, 20):
            self._redeem_code("Bo", COFFEE, "Pastry box")
        if day == STEP_DAYS[2] and month in (5, 10):
            self._others_redeem()
        if self._drain():
            rt.sync()

    def _settle_time(self) -> None:
        """What happens as time passes: pending points released, then the jobs (a birthday, the sweeper),
        then what they queued; the mirror follows what reached the chain."""
        if self._drain():
            self.rt.sync()
        done = self.rt.jobs()
        if done.get("sweeps") or self._drain():
            self.rt.sync()

    # ------------------------------------------------------------------ members

    def _enrol(
        self,
        name: str,
        partner: _PartnerSpec,
        customer_id: str,
        account: LocalAccount | None,
        *,
        months: int,
        email: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"customer_id": customer_id}
        if account is not None:
            body |= {"custody": "self", "address": account.address}
        if email is not None:
            body["email"] = email
        enrolled = self._post(partner.slug, "/v1/members", body)
        dev = None
        if account is not None and self.local:
            dev = ADA_DEV_ACCOUNT if name == "Ada" else OTHERS_DEV_ACCOUNTS + DEMO_NAMES.index(name)
        member = DemoMember(
            name=name,
            member_id=enrolled["id"],
            custody="self" if account is not None else "custodial",
            address=Web3.to_checksum_address(enrolled["address"]),
            partner_id=partner.id,
            customer_id=customer_id,
            dev_account=dev,
        )
        self.people[name] = _Person(member, account, partner, months - 1)
        self.state.members.append(member)

    def _session(self, name: str) -> str:
        """A session of the member: Sign-In with Ethereum through the route for a self-custody member; a
        custodial member's as their passkey sign-in opens it."""
        person = self.people[name]
        if person.account is not None:
            return siwe_session(self.rt.client, person.account, now=self._now())[0]
        with Session(self.rt.engine) as db, db.begin():
            issued, _ = open_session(
                db, person.member.member_id, "passkey", now=self._now(), ttl_s=self.rt.session_ttl_s
            )
            return issued.token

    def _link(
        self, name: str, partner: _PartnerSpec, customer_id: str, *, birthday: str | None = None
    ) -> None:
        code = self._post(_bearer(self._session(name)), "/v1/me/link-codes")["code"]
        body = {"customer_id": customer_id, "link_code": code}
        if birthday is not None:
            body["birthday"] = birthday
        self._post(partner.slug, "/v1/members", body)

    # ------------------------------------------------------------------ earning

    def _purchase(
        self,
        partner: _PartnerSpec,
        name: str,
        order_id: str,
        amount: int,
        lines: list[dict[str, Any]] | None = None,
        *,
        channel: str = "pos",
    ) -> None:
        person = self.people[name]
        body: dict[str, Any] = {
            "order_id": order_id,
            "member": {"member_id": person.member.member_id},
            "channel": channel,
            "currency": "EUR",
            "amount": amount,
            "lines": lines or [],
        }
        if channel == "pos":
            body["store"] = self.rng.choice(("lisbon-01", "porto-02", "faro-03"))
        self._post(partner.slug, "/v1/purchases", body)

    def _coffee(self, month: int, day: int) -> None:
        for name, person in self.people.items():
            if person.home is not COFFEE and name != "Bo":
                continue
            if month > person.active_until:
                continue
            if name == "Bo" and day != STEP_DAYS[1]:
                continue
            if name not in ("Ada", "Bo", "Cy") and self.rng.random() < 0.35:
                continue
            lines = self._basket(name, day)
            amount = sum(line["quantity"] * line["unit_price"] for line in lines)
            self._purchase(COFFEE, name, f"coffee-{name.lower()}-{month}-{day}", amount, lines)

    def _basket(self, name: str, day: int) -> list[dict[str, Any]]:
        if name == "Ada":
            lines = [_line("LATTE", "coffee", 350, 2)]
            if day == STEP_DAYS[1]:
                lines.append(_line("CROISSANT", "pastry", 250, 1))
            if day == STEP_DAYS[2]:
                lines.append(_line("BEANS-250G", "coffee", 1200, 1))
            return lines
        picks = self.rng.sample(COFFEE_MENU, k=self.rng.randint(1, 3))
        return [_line(sku, category, price, self.rng.randint(1, 2)) for sku, category, price in picks]

    def _others_travel(self, month: int, day: int) -> None:
        for name, person in self.people.items():
            if name in ("Ada", "Bo", "Cy") or month > person.active_until:
                continue
            if person.home is AIRLINE and day == STEP_DAYS[1] and self.rng.random() < 0.4:
                fare = self.rng.randrange(9_000, 60_000, 100)
                self._purchase(AIRLINE, name, f"flight-{name.lower()}-{month}", fare, channel="online")
            if person.home is HOTEL and day == STEP_DAYS[2] and self.rng.random() < 0.4:
                stay = self.rng.randrange(12_000, 45_000, 100)
                self._purchase(HOTEL, name, f"stay-{name.lower()}-{month}", stay)

    def _engage(
        self,
        partner: _PartnerSpec,
        name: str,
        kind: str,
        *,
        engagement_id: str | None = None,
        referrer: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"kind": kind, "member": {"member_id": self.people[name].member.member_id}}
        if engagement_id is not None:
            body["engagement_id"] = engagement_id
        if referrer is not None:
            body["referrer"] = {"member_id": self.people[referrer].member.member_id}
        self._post(partner.slug, "/v1/engagements", body)

    def _return(self, partner: _PartnerSpec, order_id: str, return_id: str, amount: int) -> None:
        self._post(
            partner.slug, "/v1/returns", {"order_id": order_id, "return_id": return_id, "amount": amount}
        )

    # ------------------------------------------------------------------ spending

    def _redeem_signed(self, name: str, partner: _PartnerSpec, reward: str) -> str:
        """A self-custody member's redemption: the partner asks for the consent, the member's wallet signs."""
        person = self.people[name]
        assert person.account is not None
        intent = self._post(
            partner.slug,
            "/v1/redemptions/intents",
            {
                "member": {"member_id": person.member.member_id},
                "reward_id": self.rewards[(partner.id, reward)],
            },
            status=200,
        )
        typed = intent["typed_data"]
        signature = person.account.sign_typed_data(full_message=typed).signature
        operation = self._post(
            partner.slug,
            "/v1/redemptions",
            {
                "redemption_id": intent["redemption_id"],
                "intent": typed["message"],
                "signature": "0x" + bytes(signature).hex(),
            },
        )
        return str(operation["id"])

    def _redeem_code(self, name: str, partner: _PartnerSpec, reward: str) -> str:
        """A custodial member's redemption: a one-time code from their session, typed in at the till."""
        person = self.people[name]
        reward_id = self.rewards[(partner.id, reward)]
        price = next(points for title, _, points in partner.rewards if title == reward)
        code = self._post(
            _bearer(self._session(name)),
            "/v1/me/redemption-codes",
            {"partner_id": partner.id, "max_points": price},
        )
        operation = self._post(
            partner.slug,
            "/v1/redemptions",
            {"member": {"member_id": person.member.member_id}, "code": code["code"], "reward_id": reward_id},
        )
        return str(operation["id"])

    def _others_redeem(self) -> None:
        for name, person in self.people.items():
            if name in ("Ada", "Bo", "Cy"):
                continue
            balance = self._get("admin", f"/v1/wallets/{person.member.address}")["balance"]
            affordable = [r for r in person.home.rewards if r[2] <= balance]
            if not affordable:
                continue
            reward = min(affordable, key=lambda r: r[2])[0]
            if person.account is not None:
                self._redeem_signed(name, person.home, reward)
            else:
                self._redeem_code(name, person.home, reward)

    # ------------------------------------------------------------------ the coalition's side

    def _rules(self, partner: _PartnerSpec, rules: dict[str, Any]) -> None:
        created = self._post(partner.slug, f"/v1/partners/{partner.id}/rule-sets", rules)
        self._post(
            partner.slug, f"/v1/partners/{partner.id}/rule-sets/{created['hash']}/activate", status=200
        )

    def _price(self, partner: _PartnerSpec, issue: str, redeem: str) -> None:
        self._post(
            "admin",
            f"/v1/partners/{partner.id}/prices",
            {
                "effective_from": self._now() + 60,
                "currency": "EUR",
                "issue_price": issue,
                "redeem_price": redeem,
            },
        )

    def _settle_all(self) -> None:
        """Closes the period: every partner's open position is paid (a settlement entry each)."""
        self.rt.sync()
        stamp = dt.datetime.fromtimestamp(self._now(), dt.UTC).strftime("%Y-%m")
        for spec in PARTNERS:
            position = self._get("admin", f"/v1/partners/{spec.id}/position")
            points, value = position["points"]["open"], position["value"]["open"]
            if points == 0 and value == 0:
                continue
            self._post(
                "admin",
                "/v1/admin/settlements",
                {
                    "partner_id": spec.id,
                    "points": points,
                    "value": value,
                    "payment_ref": f"SEPA {stamp} {spec.slug}",
                },
                expect_state="confirmed",
            )

    def _drain(self) -> bool:
        """Each partner's batcher steps until a step finds nothing to do; whether any did something."""
        moved = False
        for batcher in self.batchers.values():
            for _ in range(MAX_BATCHER_STEPS):
                if batcher.step().idle:
                    break
                moved = True
            else:
                raise DemoError(
                    f"partner {batcher.partner_id}'s batcher still had work after {MAX_BATCHER_STEPS} steps"
                )
        return moved

    # ------------------------------------------------------------------ HTTP

    def _now(self) -> int:
        return int(self.rt.clock())

    def _post(
        self,
        who: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        status: int | None = None,
        expect_state: str | None = None,
    ) -> dict[str, Any]:
        answer = self._request("POST", who, url, body, status=status)
        if expect_state is not None and answer.get("state") != expect_state:
            raise DemoError(
                f"POST {url}: the operation is {answer.get('state')}, not {expect_state}: {answer}"
            )
        return answer

    def _get(self, who: str, url: str) -> dict[str, Any]:
        return self._request("GET", who, url, status=200)

    def _request(
        self,
        method: str,
        who: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        status: int | None = None,
    ) -> dict[str, Any]:
        token = who.removeprefix("Bearer ") if who.startswith("Bearer ") else self.tokens[who]
        response = self.rt.client.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        ok = response.status_code == status if status is not None else response.status_code in (200, 201)
        if not ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise DemoError(f"{method} {url} answered {response.status_code}: {detail}")
        answer: dict[str, Any] = response.json()
        return answer

    def _persist(self) -> None:
        if self.state_file is not None:
            self.state.write(self.state_file)


def _rules_of(spec: _PartnerSpec, t0: int, *, version: int) -> dict[str, Any]:
    if spec is COFFEE:
        return _coffee_rules(t0, version)
    return AIRLINE_RULES if spec is AIRLINE else HOTEL_RULES


def _line(sku: str, category: str, unit_price: int, quantity: int) -> dict[str, Any]:
    return {"sku": sku, "category": category, "quantity": quantity, "unit_price": unit_price}


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _random_account() -> LocalAccount:
    account: LocalAccount = Account.create(secrets.token_hex(32))
    return account


# --------------------------------------------------------------------------- signing in


def siwe_session(client: TestClient, account: LocalAccount, *, now: int) -> tuple[str, int]:
    """Signs ``account`` in with Ethereum through the routes (nonce, the EIP-4361 message a wallet would
    build, its signature) and returns the session's token and when it expires."""
    offer = client.post("/v1/auth/siwe/nonce")
    if offer.status_code != 200:
        raise DemoError(f"POST /v1/auth/siwe/nonce answered {offer.status_code}: {offer.text}")
    nonce = offer.json()
    issued = dt.datetime.fromtimestamp(now, dt.UTC)
    text = SiweMessage(
        domain=nonce["domain"],
        address=account.address,
        statement="Sign in to your coalition wallet.",
        uri=nonce["uri"],
        chain_id=nonce["chain_id"],
        nonce=nonce["nonce"],
        issued_at=issued,
        expiration_time=issued + dt.timedelta(minutes=5),
    ).text()
    signature = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
    answer = client.post("/v1/auth/siwe", json={"message": text, "signature": signature})
    if answer.status_code != 201:
        raise DemoError(f"POST /v1/auth/siwe answered {answer.status_code}: {answer.text}")
    session = answer.json()
    return str(session["token"]), int(session["expires_at"])


@dataclass(frozen=True, slots=True)
class MemberSignIn:
    """How a demo member signs in, as ``loyalty up`` shows it (dev mode)."""

    member: DemoMember
    #: a self-custody member's anvil dev key (a public test key; local chains only)
    private_key: str | None = field(default=None, repr=False)
    #: a session opened for the console (Sign-In with Ethereum with that key), for curl
    session: str | None = field(default=None, repr=False)
    session_expires_at: int | None = None
    #: a custodial member's passkey enrolment link, while they have no passkey
    enrolment_url: str | None = field(default=None, repr=False)
    #: a custodial member who registered a passkey signs in with it
    has_passkey: bool = False


def sign_in_members(
    client: TestClient, engine: Engine, state: DemoState, *, now: int, names: tuple[str, ...] = ("Ada", "Bo")
) -> list[MemberSignIn]:
    """For each named demo member: a self-custody member's dev key and a fresh session (Sign-In with Ethereum
    through the route); a custodial member's new enrolment link (made by their partner's key through the
    route) unless they registered a passkey already."""
    out: list[MemberSignIn] = []
    for name in names:
        member = state.member(name)
        if member is None:
            continue
        if member.custody == "self":
            if member.dev_account is None or state.chain_id not in LOCAL_CHAIN_IDS:
                out.append(MemberSignIn(member))
                continue
            account = dev_account(state.chain_id, member.dev_account)
            token, expires = siwe_session(client, account, now=now)
            key = "0x" + bytes(account.key).hex()
            out.append(MemberSignIn(member, private_key=key, session=token, session_expires_at=expires))
            continue
        with Session(engine) as db:
            registered = db.scalars(select(Passkey).where(Passkey.member_id == member.member_id)).first()
        if registered is not None:
            out.append(MemberSignIn(member, has_passkey=True))
            continue
        link = client.post(
            f"/v1/members/{member.member_id}/enrolment-links",
            headers={"Authorization": f"Bearer {state.partner_key(member.partner_id)}"},
        )
        if link.status_code != 201:
            raise DemoError(f"a new enrolment link for {name} answered {link.status_code}: {link.text}")
        out.append(MemberSignIn(member, enrolment_url=link.json()["url"]))
    return out
