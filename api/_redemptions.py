"""Spending points, always with the member's consent: what is checked before a redemption, a refund or a
consent revocation goes into the outbox (:mod:`api._outbox`), which the batcher sends.

A partner key alone never spends a member's points. Every redemption carries the member's consent::

    self custody   the member's wallet signed the EIP-712 ``Redemption`` message the partner asked the
                   service for (``POST /v1/redemptions/intents``); the service checks every field again
                   and that the signature recovers the member (an ERC-1271 wallet's: the chain checks it)
    custodial      the member created a one-time code in their passkey session, bound to one partner, a
                   maximum of points and an expiry of minutes; the partner's till submits it; the code is
                   claimed once (a conditional UPDATE) and only then does the service sign with the
                   member's custodial key (:mod:`api._custody`)

Each consent has a nonce of its own: a fresh random 192-bit key with sequence 0 (``key << 64``; the ledger's
nonces are keyed, sequential only within a key), so outstanding consents never block each other and an
abandoned one never blocks the next. The reference written on chain is the partner's keyed hash of the
redemption id (:func:`api._outbox.order_ref`), so the same redemption id never spends twice.

What the outbox holds (``Operation.kind`` and its ``detail``, hex strings ``0x``-prefixed, integers as JSON
integers)::

    redemption   {"customer", "amount", "ref", "nonce", "deadline", "signature"}: the arguments of
                 ``redeem(customer, amount, ref, nonce, deadline, signature)``; ``ref`` is also the
                 operation's reference
    refund       {"amount", "refund_ref"}: ``refundRedemption`` of its parent (the redemption) under the
                 operation's reference (``refund_ref``), ``points`` = amount
    revocation   {"customer", "nonce", "signature"}: ``cancelConsent(customer, nonce, signature)``

A redemption's points count against the member's balance from the moment it is accepted: the balance a new
one may spend is the mirror's live balance less what the member's redemptions not yet mirrored take
(:func:`spendable`).
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Final, cast

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError
from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from chain._eip712 import cancellation_typed_data, redemption_typed_data
from indexer import MirrorView

from ._custody import Custody
from ._errors import Conflict, FieldError, Gone, InvalidRequest, NotFound, NotReady
from ._outbox import OperationKind, order_ref, order_ref_key
from ._services import AsOf
from ._tables import Member, Operation, RedemptionCode, Reward
from ._tokens import digest

__all__ = [
    "CODE_DIGITS",
    "CONSENT_TTL_S",
    "EIP712_DOMAIN_FIELDS",
    "MAX_POINTS",
    "REVOCATION",
    "available_rewards",
    "cancel_queued",
    "claim_code",
    "code_digest",
    "custodial_signature",
    "new_code",
    "new_nonce",
    "public_code_id",
    "recovers",
    "redemption_detail",
    "redemption_ref",
    "refundable",
    "revocation_typed_data",
    "reward_to_redeem",
    "same_request",
    "spendable",
    "take_stock",
    "typed_data",
]

#: How long a consent stays valid: its deadline is at most this far ahead.
CONSENT_TTL_S: Final = 3600
#: The largest amount or price (the ledger's own bound is far above; a BIGINT holds it).
MAX_POINTS: Final = 10**12
#: A redemption code's length (digits, from ``secrets``).
CODE_DIGITS: Final = 10
#: The outbox kind of a consent revocation (``cancelConsent``).
REVOCATION: Final[OperationKind] = "revocation"
_SEQUENCE_BITS: Final = 64
#: secp256k1 n / 2: the ledger (OpenZeppelin ECDSA) takes low-s signatures only.
_HALF_ORDER: Final = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
#: The EIP-712 domain's type, which wallets (``eth_signTypedData_v4``) want spelled out.
EIP712_DOMAIN_FIELDS: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
#: States of a redemption whose points are taken but that the mirror may not show yet.
_OUTSTANDING: Final = ("pending", "accepted", "submitted")


# --------------------------------------------------------------------------- nonces, references


def new_nonce() -> int:
    """A consent's nonce: a fresh random 192-bit key, sequence 0."""
    return secrets.randbits(192) << _SEQUENCE_BITS


def redemption_ref(db: Session, partner_id: int, kind: str, natural_key: str, *, now: int) -> bytes:
    """The on-chain reference of the partner's redemption (or refund) ``natural_key``."""
    return order_ref(order_ref_key(db, partner_id, now=now), kind, natural_key)


def same_request(op: Operation, request: dict[str, Any]) -> bool:
    """Whether ``request`` is what ``op`` was accepted for (the natural key's second use)."""
    stored: dict[str, Any] = json.loads(op.request)
    given: dict[str, Any] = json.loads(json.dumps(request))
    return stored == given


# --------------------------------------------------------------------------- rewards


def available_rewards(now: int | ColumnElement[int]) -> ColumnElement[bool]:
    """Rewards that can be redeemed at ``now``: not retired, in stock, inside their validity window."""
    return and_(
        Reward.retired_at.is_(None),
        or_(Reward.stock.is_(None), Reward.stock > 0),
        or_(Reward.valid_from.is_(None), Reward.valid_from <= now),
        or_(Reward.valid_until.is_(None), Reward.valid_until > now),
    )


def reward_to_redeem(db: Session, partner_id: int, reward_id: int, *, now: int) -> Reward:
    """The partner's reward ``reward_id``, if it can be redeemed now (404: not the partner's; 409: retired,
    out of stock, outside its validity window)."""
    reward = db.get(Reward, reward_id)
    if reward is None or reward.partner_id != partner_id:
        raise NotFound(f"no reward {reward_id} in partner {partner_id}'s catalogue")
    if reward.retired_at is not None:
        raise Conflict(f"reward {reward_id} was retired")
    if reward.stock is not None and reward.stock <= 0:
        raise Conflict(f"reward {reward_id} is out of stock")
    if (reward.valid_from is not None and reward.valid_from > now) or (
        reward.valid_until is not None and reward.valid_until <= now
    ):
        raise Conflict(f"reward {reward_id} cannot be redeemed now (outside its validity window)")
    return reward


def take_stock(db: Session, reward: Reward) -> None:
    """One of the reward's stock, taken atomically (a reward without stock is unlimited)."""
    if reward.stock is None:
        return
    result = db.execute(
        update(Reward)
        .where(Reward.id == reward.id, Reward.stock > 0)
        .values(stock=Reward.stock - 1)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise Conflict(f"reward {reward.id} is out of stock")


def _give_back_stock(db: Session, reward_id: int) -> None:
    db.execute(
        update(Reward)
        .where(Reward.id == reward_id, Reward.stock.is_not(None))
        .values(stock=Reward.stock + 1)
        .execution_options(synchronize_session=False)
    )


# --------------------------------------------------------------------------- balances


def spendable(view: MirrorView, as_of: AsOf, db: Session, address: str) -> int:
    """What ``address`` may spend now: the mirror's live balance as of ``as_of``, less the points of its
    redemptions that the mirror does not show yet (accepted or submitted, or confirmed in a block after the
    mirror's)."""
    wallet = address.lower()
    balance = view.balance(wallet, at=as_of.time)
    taken = db.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.member_address == wallet,
            Operation.kind == "redemption",
            or_(
                Operation.state.in_(_OUTSTANDING),
                and_(Operation.state == "confirmed", Operation.block_number > as_of.block_number),
            ),
        )
    )
    return balance - int(taken or 0)


def refundable(db: Session, redemption: Operation) -> int:
    """What may still be refunded of ``redemption``: its points less its refunds not failed nor cancelled."""
    refunded = db.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.parent_id == redemption.id,
            Operation.kind == "refund",
            Operation.state.not_in(("failed", "cancelled")),
        )
    )
    return redemption.points - int(refunded or 0)


# --------------------------------------------------------------------------- consents


def typed_data(
    *,
    chain_id: int,
    contract: str,
    customer: str,
    partner_id: int,
    amount: int,
    ref: bytes,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The EIP-712 ``Redemption`` the customer signs (the ledger's domain on this chain and contract)."""
    return redemption_typed_data(
        chain_id=chain_id,
        contract=to_checksum_address(contract),
        customer=to_checksum_address(customer),
        partner_id=partner_id,
        amount=amount,
        ref=ref,
        nonce=nonce,
        deadline=deadline,
    )


def revocation_typed_data(*, chain_id: int, contract: str, customer: str, nonce: int) -> dict[str, Any]:
    """The EIP-712 ``ConsentCancellation`` that revokes the consent signed with ``nonce``."""
    return cancellation_typed_data(
        chain_id=chain_id,
        contract=to_checksum_address(contract),
        customer=to_checksum_address(customer),
        nonce=nonce,
    )


def recovers(full_message: dict[str, Any], signature: bytes, customer: str) -> bool:
    """Whether ``signature`` of the EIP-712 message is the EOA ``customer``'s, as the ledger's ECDSA check
    takes it (65 bytes, ``v`` 27 or 28, low ``s``)."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return False
    if int.from_bytes(signature[32:64], "big") > _HALF_ORDER:
        return False
    try:
        signer = Account.recover_message(encode_typed_data(full_message=full_message), signature=signature)
    except (BadSignature, ValidationError, ValueError):
        return False
    return str(signer).lower() == customer.lower()


def custodial_signature(custody: Custody | None, member: Member, full_message: dict[str, Any]) -> bytes:
    """The custodial member's signature of ``full_message`` with the key the service derives for them."""
    if custody is None:
        raise NotReady("custodial wallets are not configured (the custody seed in the keystore)")
    if member.custody != "custodial" or member.custody_index is None:
        raise Conflict("this member holds their own key: their wallet signs their consents")
    signer = custody.signer_of(member.custody_index)
    if signer.address.lower() != member.address:
        raise Conflict("this member's custodial key does not match their address (a migrated wallet?)")
    return signer.sign_typed_data(full_message)


def redemption_detail(
    *, customer: str, amount: int, ref: bytes, nonce: int, deadline: int, signature: bytes
) -> dict[str, Any]:
    """What the batcher calls ``redeem`` with."""
    return {
        "customer": to_checksum_address(customer),
        "amount": amount,
        "ref": "0x" + ref.hex(),
        "nonce": nonce,
        "deadline": deadline,
        "signature": "0x" + signature.hex(),
    }


# --------------------------------------------------------------------------- redemption codes


def new_code() -> str:
    """A one-time redemption code: :data:`CODE_DIGITS` random digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(member_id: str, code: str) -> bytes:
    """How a code is stored: the SHA-256 of the member and the code (two members' codes never collide)."""
    return digest(f"{member_id}:{code}")


def public_code_id(code_hash: bytes) -> str:
    """A code's public id (not a secret: the first 8 bytes of its digest)."""
    return bytes(code_hash[:8]).hex()


def claim_code(
    db: Session, *, member_id: str, partner_id: int, code: str, amount: int, now: int
) -> RedemptionCode:
    """Uses the member's code for ``amount`` points at the partner, once: a conditional UPDATE, so of two
    concurrent uses exactly one succeeds. 410 when the code is unknown, another partner's, used, revoked or
    expired; 422 when the amount exceeds the code's maximum (the code stays usable)."""
    code_hash = code_digest(member_id, code)
    row = db.get(RedemptionCode, code_hash)
    refused = Gone("this redemption code is unknown, used, revoked or expired: ask the member for a new one")
    if row is None or row.partner_id != partner_id:
        raise refused
    if amount > row.max_points:
        raise InvalidRequest(
            f"the member's code allows at most {row.max_points} points",
            [FieldError("body.code", f"allows at most {row.max_points} points")],
        )
    result = db.execute(
        update(RedemptionCode)
        .where(
            RedemptionCode.code_hash == code_hash,
            RedemptionCode.member_id == member_id,
            RedemptionCode.partner_id == partner_id,
            RedemptionCode.used_at.is_(None),
            RedemptionCode.revoked_at.is_(None),
            RedemptionCode.expires_at > now,
            RedemptionCode.max_points >= amount,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise refused
    db.refresh(row)
    return row


# --------------------------------------------------------------------------- revocations


def cancel_queued(db: Session, *, address: str, nonce: int, now: int) -> list[int]:
    """Cancels the customer's redemptions signed with ``nonce`` that were not sent yet (a conditional
    UPDATE each: one the batcher took meanwhile stays as it is; the on-chain revocation then refuses it),
    giving their rewards' stock back. Returns the cancelled operations' ids."""
    cancelled: list[int] = []
    queued = db.scalars(
        select(Operation).where(
            Operation.member_address == address.lower(),
            Operation.kind == "redemption",
            Operation.state.in_(("pending", "accepted")),
        )
    ).all()
    for op in queued:
        if op.detail is None or json.loads(op.detail).get("nonce") != nonce:
            continue
        result = db.execute(
            update(Operation)
            .where(Operation.id == op.id, Operation.state.in_(("pending", "accepted")))
            .values(state="cancelled", failure_detail="the member revoked this consent", updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount == 1:
            cancelled.append(op.id)
            reward_id = json.loads(op.request).get("reward_id")
            if isinstance(reward_id, int):
                _give_back_stock(db, reward_id)
    return cancelled
