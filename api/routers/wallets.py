"""Wallets: a live balance with its points by epoch and their exact expiry, what expires soon, the tier, and
the history of every entry that touched the wallet (with the links from an issuance to its returns and from
a redemption to its refunds).

Who may read a wallet: its member (session), a partner the member is enrolled with, admin and auditor keys.
"""

from __future__ import annotations

from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Path, Response
from pydantic import Field
from sqlalchemy import Integer, bindparam, func, select

from indexer import MirrorView, Partner, PartnerStatus, Tier, WalletEntry
from indexer._decode import keccak

from .._auth import Authenticated, Principal, ServicesDep
from .._errors import FieldError, Forbidden, InvalidRequest, NotReady, Unauthenticated
from .._models import AsOfPublic, ResponseModel, hex0x, link, linked_response, problem_responses
from .._pagination import SeqPage
from .._redemptions import available_rewards
from .._services import AsOf, Services
from .._tables import Member, Membership, PartnerProfile, Reward

__all__ = [
    "EXPIRING_WINDOW_S",
    "REASONS",
    "AddressPath",
    "EpochPointsPublic",
    "HistoryEntryPublic",
    "HistoryPublic",
    "NextRewardPublic",
    "TierPublic",
    "WalletPublic",
    "checked_address",
    "eip55",
    "router",
    "wallet_history",
    "wallet_of",
]

router = APIRouter(prefix="/v1", tags=["wallets"])

_TIER = select(Tier.qualifying_points, Tier.tier, Tier.as_of_epoch).where(
    Tier.account == bindparam("account")
)
#: Rewards redeemable now at a partner that accepts points (``now`` bound per read).
_OPEN_REWARDS = select(Reward.id, Reward.partner_id, Reward.name, Reward.points_price).where(
    available_rewards(bindparam("now", type_=Integer)),
    Reward.partner_id.in_(
        select(Partner.partner_id).where(Partner.status == PartnerStatus.ACTIVE, Partner.can_accept)
    ),
)
_NEXT_REWARD = (
    _OPEN_REWARDS.where(Reward.points_price > bindparam("balance"))
    .order_by(Reward.points_price, Reward.id)
    .limit(1)
)
_REDEEMABLE = select(func.count()).select_from(
    _OPEN_REWARDS.where(Reward.points_price <= bindparam("balance")).subquery()
)

#: "expiring soon": within 30 days
EXPIRING_WINDOW_S = 30 * 24 * 3600
#: The ledger's reason codes (contracts/README.md); others are programme-specific.
REASONS = {
    0: "unspecified",
    1: "purchase",
    2: "review",
    3: "referral",
    4: "birthday",
    5: "newsletter sign-up",
    6: "campaign",
    7: "goodwill",
}

AddressPath = Annotated[
    str,
    Path(
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="the wallet's address (EIP-55 checksummed, or all lower / upper case)",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    ),
]


def eip55(address: str) -> str:
    """The EIP-55 checksummed form of a ``0x`` + 40 hex digits address (one Keccak with the mirror's fast
    implementation; every wallet read checks one)."""
    lower = address[2:].lower()
    digest = keccak(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(lower, digest, strict=False))


def checked_address(address: str, field: str = "path.address") -> str:
    """The checksummed address; a mixed-case address with a wrong checksum is refused (a typo)."""
    checksummed = eip55(address)
    body = address[2:]
    if body != body.lower() and body != body.upper() and address != checksummed:
        raise InvalidRequest(
            f"{address} has a wrong EIP-55 checksum", [FieldError(field, "wrong EIP-55 checksum")]
        )
    return checksummed


class EpochPointsPublic(ResponseModel):
    epoch: int
    points: int
    expires_at: int


class TierPublic(ResponseModel):
    name: str
    qualifying_points: int = Field(description="points earned in the rolling qualifying window")
    next_tier: str | None
    points_to_next_tier: int | None
    as_of_epoch: int | None


class NextRewardPublic(ResponseModel):
    reward_id: int
    partner_id: int
    name: str
    points_price: int
    points_away: int = Field(description="what the balance lacks: you are points_away points away")


class WalletPublic(ResponseModel):
    address: str
    balance: int = Field(description="live points at as_of.time (balanceOf in a block with that timestamp)")
    epochs: list[EpochPointsPublic] = Field(description="live points by epoch, first to expire first")
    expiring_30d: int = Field(description="points that expire within 30 days of as_of.time")
    next_expiry_at: int | None
    next_expiry_points: int
    tier: TierPublic
    next_reward: NextRewardPublic | None = Field(
        default=None,
        description="the cheapest reward redeemable now (any partner) the balance does not cover",
    )
    redeemable_count: int = Field(default=0, description="rewards redeemable now that the balance covers")
    rewards_url: str = Field(
        default="/v1/rewards", description="what can be redeemed where (the rewards the balance covers)"
    )
    as_of: AsOfPublic


class HistoryEntryPublic(ResponseModel):
    seq: int
    kind: str = Field(description="the ledger entry (PointsIssued, PointsRedeemed, IssuanceReversed, ...)")
    partner_id: int | None
    partner_name: str | None
    reason: int | None
    reason_label: str | None
    amount: int | None
    epoch: int | None
    value: int | None = Field(description="settlement units per point of the entry")
    order_ref: str | None = Field(description="the partner's order reference (a batch item's own)")
    ref: str | None = Field(description="the entry's reference (a batch's Merkle root)")
    return_ref: str | None
    refund_ref: str | None
    rule_hash: str | None
    counterparty: str | None
    original_seq: int | None = Field(description="a reversal's issuance, a refund's redemption")
    undone_by: list[int] = Field(description="the reversals of an issuance / refunds of a redemption")
    returned: int = Field(
        default=0, description="an issuance: what its returns asked back; a return: what it asked back"
    )
    recovered: int = Field(
        default=0, description="an issuance: what its returns took back; a return: what it took back"
    )
    refunded: int = Field(
        default=0, description="a redemption: what its refunds gave back; a refund: what it gave back"
    )
    restored: int = Field(
        default=0, description="of ``refunded``, the part live again (the rest had expired)"
    )
    tx_hash: str
    block_number: int
    block_timestamp: int
    log_index: int


class HistoryPublic(ResponseModel):
    data: list[HistoryEntryPublic]
    next_cursor: str | None
    as_of: AsOfPublic


def member_partners(services: Services, address: str) -> tuple[str, set[int]] | None:
    """The member with this wallet and the partners it is enrolled with (None: not a member)."""
    with services.session() as db:
        member = db.scalars(select(Member).where(Member.address == address.lower())).one_or_none()
        if member is None:
            return None
        partners = set(db.scalars(select(Membership.partner_id).where(Membership.member_id == member.id)))
        return member.id, partners


def require_wallet_reader(principal: Principal, services: Services, address: str) -> None:
    if principal.role == "anonymous":
        raise Unauthenticated("reading a wallet needs credentials")
    if principal.sees_everything:
        return
    if principal.role == "member":
        if principal.address != address.lower():
            raise Forbidden("a member reads only their own wallet")
        return
    found = member_partners(services, address)
    if found is None or not principal.may_see_member(found[0], found[1]):
        raise Forbidden("this wallet is not one of this partner's members")


def wallet_of(services: Services, view: MirrorView, as_of: AsOf, address: str) -> WalletPublic:
    holdings = view.holdings(address, at=as_of.time)
    soon = [h for h in holdings if h.expires_at <= as_of.time + EXPIRING_WINDOW_S]
    first = holdings[0] if holdings else None
    tier = view.conn.execute(_TIER, {"account": address.lower()}).first()
    thresholds = services.settings.tier_thresholds
    qualifying = tier.qualifying_points if tier is not None else 0
    name = tier.tier if tier is not None else next(iter(thresholds))
    higher = [(n, t) for n, t in thresholds.items() if t > qualifying]
    balance = sum(h.points for h in holdings)
    rewards = {"now": as_of.time, "balance": balance}
    cheapest = view.conn.execute(_NEXT_REWARD, rewards).first()
    return WalletPublic(
        address=address,
        balance=balance,
        epochs=[EpochPointsPublic(epoch=h.epoch, points=h.points, expires_at=h.expires_at) for h in holdings],
        expiring_30d=sum(h.points for h in soon),
        next_expiry_at=first.expires_at if first else None,
        next_expiry_points=first.points if first else 0,
        tier=TierPublic(
            name=name,
            qualifying_points=qualifying,
            next_tier=higher[0][0] if higher else None,
            points_to_next_tier=higher[0][1] - qualifying if higher else None,
            as_of_epoch=tier.as_of_epoch if tier is not None else None,
        ),
        next_reward=None
        if cheapest is None
        else NextRewardPublic(
            reward_id=cheapest.id,
            partner_id=cheapest.partner_id,
            name=cheapest.name,
            points_price=cheapest.points_price,
            points_away=cheapest.points_price - balance,
        ),
        redeemable_count=int(view.conn.execute(_REDEEMABLE, rewards).scalar_one()),
        rewards_url=f"/v1/rewards?max_points={balance}",
        as_of=AsOfPublic.of(as_of),
    )


def _history_entry(w: WalletEntry, names: dict[int, str]) -> HistoryEntryPublic:
    e = w.entry
    order_ref = e.item_ref if e.event in ("PointsIssued", "PointsIssuedInBatch", "IssuanceReversed") else None
    if e.event in ("PointsRedeemed", "RedemptionRefunded"):
        order_ref = e.ref
    returned, recovered, refunded, restored = w.returned, w.recovered, w.refunded, w.restored
    if e.event == "IssuanceReversed":  # what this return asked back and took back
        returned, recovered = e.requested or 0, e.recovered or 0
    elif e.event == "RedemptionRefunded":  # what this refund gave back, and the part that was live again
        refunded, restored = e.amount or 0, e.restored or 0
    return HistoryEntryPublic(
        seq=e.seq,
        kind=e.event,
        partner_id=e.partner_id,
        partner_name=names.get(e.partner_id) if e.partner_id is not None else None,
        reason=e.reason,
        reason_label=None if e.reason is None else REASONS.get(e.reason, f"programme reason {e.reason}"),
        amount=e.amount,
        epoch=e.epoch,
        value=w.value,
        order_ref=hex0x(order_ref),
        ref=hex0x(e.ref),
        return_ref=hex0x(e.return_ref),
        refund_ref=hex0x(e.refund_ref),
        rule_hash=hex0x(e.rule_hash),
        counterparty=None if e.counterparty is None else to_checksum_address(e.counterparty),
        original_seq=e.original_seq,
        undone_by=list(w.undone_by),
        returned=returned,
        recovered=recovered,
        refunded=refunded,
        restored=restored,
        tx_hash="0x" + e.tx_hash.hex(),
        block_number=e.block_number,
        block_timestamp=e.block_timestamp,
        log_index=e.log_index,
    )


def wallet_history(
    services: Services, view: MirrorView, as_of: AsOf, address: str, page: SeqPage
) -> HistoryPublic:
    rows = view.wallet_history(address, before=page.before, limit=page.limit + 1, newest_first=True)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    with services.session() as db:
        names = {p.partner_id: p.name for p in db.scalars(select(PartnerProfile))}
    return HistoryPublic(
        data=[_history_entry(w, names) for w in rows],
        next_cursor=str(rows[-1].entry.seq) if more and rows else None,
        as_of=AsOfPublic.of(as_of),
    )


ERRORS = problem_responses(Unauthenticated, Forbidden, NotReady)
HISTORY_LINK = link("GET", "/v1/wallets/{address}/history", "its history", address="$request.path.address")


@router.get(
    "/wallets/{address}",
    response_model=WalletPublic,
    responses={**linked_response(200, "The wallet", {"GetWalletHistory": HISTORY_LINK}), **ERRORS},
    summary="A wallet",
)
def get_wallet(address: AddressPath, caller: Authenticated, services: ServicesDep) -> Response:
    """The live balance, points by epoch with their expiry times, points expiring within 30 days and the next
    expiry, and the tier with the points to the next one."""
    account = checked_address(address)
    require_wallet_reader(caller, services, account)
    with services.mirror() as (view, as_of):
        wallet = wallet_of(services, view, as_of, account)
    # Built and checked as WalletPublic already: serialised once, not validated again on the way out (the
    # hottest route; response_model still documents it).
    return Response(wallet.model_dump_json(), media_type="application/json")


@router.get(
    "/wallets/{address}/history", response_model=HistoryPublic, responses=ERRORS, summary="A wallet's history"
)
def get_wallet_history(
    address: AddressPath, page: SeqPage, caller: Authenticated, services: ServicesDep
) -> HistoryPublic:
    """Every entry that touched the wallet, newest first: issues and batch items (with what their returns took
    back), redemptions (with their refunds), reversals, refunds, expiries, transfers and migrations."""
    account = checked_address(address)
    require_wallet_reader(caller, services, account)
    with services.mirror() as (view, as_of):
        return wallet_history(services, view, as_of, account, page)
