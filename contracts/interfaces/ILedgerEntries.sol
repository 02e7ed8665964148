// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title ILedgerEntries
 * @dev The types, errors and ledger entries (events) shared by the ledger ({ILoyaltyLedger}) and its extension
 * ({ILoyaltyLedgerExtension}), which together are one contract at one address.
 *
 * Ledger entries: every event below that carries a `seq` field is a ledger entry. Each entry's
 * parameters are all static ABI types, and the indexed ones are declared first, so the entry hash
 *
 *     entryHash = keccak256(topic0 ‖ topic1 ‖ … ‖ data)
 *
 * can be computed from a raw log without its ABI, and equals `keccak256(abi.encode(selector, args…))`
 * in the contract. The contract keeps `head = keccak256(abi.encodePacked(head, entryHash))`, starting
 * from `bytes32(0)`, and `seq` numbers entries 1, 2, 3, … without gaps.
 *
 * Time: the ledger's clock is `block.timestamp − genesis − time spent paused`; it stands still while the
 * ledger is paused, so no point expires while nobody can spend it. Epochs are counted on that clock.
 */
interface ILedgerEntries {
    // ------------------------------------------------------------------ types

    /// @dev A partner's life cycle. `None` is never stored for a registered partner.
    enum PartnerStatus {
        None,
        Active,
        Suspended,
        Offboarded
    }

    /// @dev A partner brand of the coalition and its settlement counters, as returned by {partner}.
    /// Values are in settlement units, each entry valued at the settlement value in force when it happened.
    struct PartnerView {
        uint32 partnerId;
        address operator;
        address settlement;
        PartnerStatus status;
        bool canIssue;
        bool canAccept;
        uint256 allowance;
        uint256 issued;
        uint256 redeemed;
        uint256 issuedValue;
        uint256 redeemedValue;
        uint256 reversed;
        uint256 refunded;
        uint256 reversedValue;
        uint256 refundedValue;
        int256 settledPoints;
        int256 settledValue;
    }

    /// @dev One issuance, as its entries recorded it, to reverse part of it: a single issue (`ref` == `itemRef`,
    /// empty `proof`) or one item of a batch (`ref` the batch's Merkle root, `proof` from the item's leaf to it).
    /// `issuedAt` is the issuing block's timestamp, `value` the settlement value per point of the entry.
    struct IssuanceItem {
        bytes32 ref;
        address customer;
        uint256 amount;
        bytes32 itemRef;
        uint256 epoch;
        uint256 issuedAt;
        uint256 value;
        bytes32[] proof;
    }

    /// @dev One redemption, as its {PointsRedeemed} entries recorded it (one per epoch, in order), to refund part
    /// of it.
    struct RedemptionRecord {
        address customer;
        bytes32 ref;
        uint256 value;
        uint256[] epochs;
        uint256[] amounts;
    }

    // ------------------------------------------------------------------ errors

    /// @dev `caller` is not the operator of any registered partner.
    error LedgerUnknownPartner(address caller);
    /// @dev No partner is registered under `partnerId`.
    error LedgerPartnerNotFound(uint32 partnerId);
    /// @dev `partnerId` is 0, which is reserved.
    error LedgerInvalidPartnerId(uint32 partnerId);
    /// @dev A partner is already registered under `partnerId`.
    error LedgerPartnerExists(uint32 partnerId);
    /// @dev `operator` is the zero address, operates (or operated) a partner, holds a role or is the pending admin.
    error LedgerInvalidOperator(address operator);
    /// @dev `account` operates partner `partnerId`, so it may hold no role.
    error LedgerOperatorCannotHoldRole(address account, uint32 partnerId);
    /// @dev `caller` may not rotate partner `partnerId`'s operator key (neither the admin nor its active operator).
    error LedgerUnauthorizedRotation(address caller, uint32 partnerId);
    /// @dev `operator` no longer operates partner `partnerId`: the partner rotated to another key.
    error LedgerRotatedOperator(address operator, uint32 partnerId);
    /// @dev `settlement` is the zero address.
    error LedgerInvalidSettlementAddress(address settlement);
    /// @dev Partner `partnerId` is suspended.
    error LedgerPartnerSuspended(uint32 partnerId);
    /// @dev Partner `partnerId` is active, so it cannot be reactivated.
    error LedgerPartnerNotSuspended(uint32 partnerId);
    /// @dev Partner `partnerId` has left the coalition: its history stays, it can do nothing more.
    error LedgerPartnerOffboarded(uint32 partnerId);
    /// @dev Partner `partnerId` has no right to issue points.
    error LedgerPartnerCannotIssue(uint32 partnerId);
    /// @dev Partner `partnerId` has no right to accept (redeem) points.
    error LedgerPartnerCannotAccept(uint32 partnerId);
    /// @dev Issuing (or cutting) `needed` points would exceed partner `partnerId`'s remaining `allowance`.
    error LedgerAllowanceExceeded(uint32 partnerId, uint256 allowance, uint256 needed);
    /// @dev Partner `partnerId` already used `ref` (issue and batch references, redemption references and
    /// settlement payment references are three separate namespaces per partner).
    error LedgerReferenceUsed(uint32 partnerId, bytes32 ref);
    /// @dev An amount of zero points.
    error LedgerZeroAmount();
    /// @dev `amount` is above the largest amount `max` allowed here.
    error LedgerAmountTooLarge(uint256 amount, uint256 max);
    /// @dev A settlement value above `max` (so that no position can overflow).
    error LedgerInvalidSettlementValue(uint256 value, uint256 max);
    /// @dev A batch with `recipients` recipients, `amounts` amounts and `references` item references.
    error LedgerBatchLengthMismatch(uint256 recipients, uint256 amounts, uint256 references);
    /// @dev A batch without recipients.
    error LedgerEmptyBatch();
    /// @dev `account` holds `balance` live points and `needed` were asked for.
    error LedgerInsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @dev The customer's consent expired at `deadline`.
    error LedgerExpiredSignature(uint256 deadline);
    /// @dev The consent for `customer` was signed by `signer` (the zero address: a contract wallet refused it).
    error LedgerInvalidSigner(address customer, address signer);
    /// @dev Transfers between customers are switched off.
    error LedgerTransfersDisabled();
    /// @dev `epoch` lies after the current epoch `current`.
    error LedgerFutureEpoch(uint256 epoch, uint256 current);
    /// @dev Deployment parameters out of range.
    error LedgerInvalidConfiguration(uint256 epochLength, uint256 validityDuration);
    /// @dev A reversal window above `max` seconds.
    error LedgerInvalidReversalWindow(uint256 window, uint256 max);
    /// @dev Partner `partnerId` made no issuance under `ref` with these items, epoch, time and value (or the
    /// Merkle proof does not lead from the item to the batch's root).
    error LedgerIssuanceNotFound(uint32 partnerId, bytes32 ref);
    /// @dev The reversal window of the issuance under `ref` closed at `closedAt` (a timestamp).
    error LedgerReversalWindowClosed(bytes32 ref, uint256 closedAt);
    /// @dev Reversing `requested` more points of an issuance of `issued` points of which `reversed` were already
    /// reversed would take back more than it issued.
    error LedgerReversalExceedsIssuance(bytes32 ref, uint256 issued, uint256 reversed, uint256 requested);
    /// @dev Partner `partnerId` made no redemption under `ref` with this customer, value and epochs.
    error LedgerRedemptionNotFound(uint32 partnerId, bytes32 ref);
    /// @dev Refunding `requested` more points of a redemption of `redeemed` points of which `refunded` were
    /// already refunded would give back more than it took.
    error LedgerRefundExceedsRedemption(bytes32 ref, uint256 redeemed, uint256 refunded, uint256 requested);
    /// @dev A migration from `from` to `to`: the zero address on either side, the same account, or a target that
    /// itself migrated away (a retired account).
    error LedgerInvalidMigration(address from, address to);
    /// @dev The extension's functions run only inside the ledger (by delegatecall), never on their own.
    error LedgerExtensionOnly();

    // ------------------------------------------------------------------ ledger entries: partners

    /// @dev Partner `partnerId` joined the coalition.
    event PartnerRegistered(
        uint32 indexed partnerId,
        address indexed operator,
        uint64 seq,
        address settlement,
        bool canIssue,
        bool canAccept,
        uint256 allowance
    );
    /// @dev Partner `partnerId`'s remaining issuance allowance went from `previousAllowance` to `allowance`.
    event PartnerAllowanceChanged(uint32 indexed partnerId, uint64 seq, uint256 previousAllowance, uint256 allowance);
    /// @dev Partner `partnerId`'s status changed to `status` (a {PartnerStatus}).
    event PartnerStatusChanged(uint32 indexed partnerId, uint64 seq, uint8 status);
    /// @dev Partner `partnerId` is now operated by `operator` instead of `previousOperator`.
    event PartnerOperatorChanged(
        uint32 indexed partnerId, address indexed operator, uint64 seq, address previousOperator
    );
    /// @dev Partner `partnerId`'s rights changed.
    event PartnerRightsChanged(uint32 indexed partnerId, uint64 seq, bool canIssue, bool canAccept);
    /// @dev Partner `partnerId` is now paid out to `settlement`.
    event PartnerSettlementAddressChanged(uint32 indexed partnerId, uint64 seq, address settlement);
    /// @dev The treasury recorded a settlement with partner `partnerId`: `points` and `value` (settlement units)
    /// leave its open position (positive: paid to the partner; negative: received from it).
    event SettlementRecorded(uint32 indexed partnerId, uint64 seq, int256 points, int256 value, bytes32 paymentRef);

    // ------------------------------------------------------------------ ledger entries: points

    /// @dev `amount` points of `epoch` were issued to `to` by partner `partnerId` under the partner's reference
    /// `ref` (its order id hash), valued at `value` settlement units per point.
    event PointsIssued(
        uint32 indexed partnerId,
        address indexed to,
        uint64 seq,
        uint256 epoch,
        uint256 amount,
        bytes32 ref,
        uint16 reason,
        bytes32 ruleHash,
        uint256 value
    );
    /// @dev Partner `partnerId` issued a batch of `count` items, `total` points of `epoch`, valued at `value` per
    /// point. `ref` is the Merkle root of the items (OpenZeppelin StandardMerkleTree over (address recipient,
    /// uint256 amount, bytes32 itemRef), leaves in item order) and the batch's reference. The items are the
    /// {PointsIssuedInBatch} entries numbered `seq + 1` … `seq + count` that follow it.
    event PointsBatchIssued(
        uint32 indexed partnerId,
        uint64 seq,
        uint256 epoch,
        bytes32 ref,
        uint16 reason,
        bytes32 ruleHash,
        uint256 count,
        uint256 total,
        uint256 value
    );
    /// @dev One item of the batch announced by the preceding {PointsBatchIssued}: `amount` points to `to` for the
    /// partner's order `itemRef`.
    event PointsIssuedInBatch(address indexed to, uint64 seq, uint256 amount, bytes32 itemRef);
    /// @dev `amount` points of `epoch` held by `customer` were redeemed at partner `partnerId`, valued at `value`
    /// per point. A redemption spanning several epochs is several entries with the same reference and nonce.
    event PointsRedeemed(
        uint32 indexed partnerId,
        address indexed customer,
        uint64 seq,
        uint256 epoch,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 value
    );
    /// @dev Partner `partnerId` reversed `requested` points of its issuance `ref` (item `itemRef` of a batch, or
    /// `ref` itself for a single issue) of `issued` points to `customer`, for its return `returnRef`; `recovered`
    /// of them were still held and are taken back by the {PointsReversed} entries that follow (the rest was spent
    /// or expired). They leave the partner's issued figures at the issuance's `value` per point. (customer,
    /// issued, itemRef) is the item's Merkle leaf, so the entry names exactly the item it reverses.
    event IssuanceReversed(
        uint32 indexed partnerId,
        address indexed customer,
        uint64 seq,
        bytes32 ref,
        bytes32 itemRef,
        uint256 issued,
        bytes32 returnRef,
        uint256 requested,
        uint256 recovered,
        uint256 value
    );
    /// @dev `amount` points of `epoch` were taken back from `customer` for partner `partnerId`'s return `returnRef`.
    event PointsReversed(
        uint32 indexed partnerId, address indexed customer, uint64 seq, uint256 epoch, uint256 amount, bytes32 returnRef
    );
    /// @dev Partner `partnerId` refunded `amount` points of its redemption `ref` to `customer` under `refundRef`,
    /// at the redemption's `value` per point: the {PointsRefunded} entries that follow give them back to the epochs
    /// they were spent from, newest first; `restored` of them are live, the rest expired on arrival.
    event RedemptionRefunded(
        uint32 indexed partnerId,
        address indexed customer,
        uint64 seq,
        bytes32 ref,
        bytes32 refundRef,
        uint256 amount,
        uint256 restored,
        uint256 value
    );
    /// @dev `amount` points of `epoch` went back to `customer` for partner `partnerId`'s refund `refundRef`. When
    /// `epoch` has expired, a {PointsExpired} entry of the same amount follows at once (the balance never holds them).
    event PointsRefunded(
        uint32 indexed partnerId, address indexed customer, uint64 seq, uint256 epoch, uint256 amount, bytes32 refundRef
    );
    /// @dev Every live point of `from` (`amount` in all) moved to `to` keeping its epoch, by the {PointsTransferred}
    /// entries that follow: with both accounts' signed consent under `from`'s `nonce`, or (`recovery`) by the
    /// coalition's recovery process for a lost key (the admin, behind its timelock). `from` is retired: it can never
    /// be a migration target again, and reversals of what it earned and refunds of what it redeemed follow it to
    /// `to` (see {holderOf}).
    event AccountMigrated(
        address indexed from, address indexed to, uint64 seq, uint256 nonce, bool recovery, uint256 amount
    );
    /// @dev `amount` expired points of `epoch` held by `account` were removed from the supply.
    event PointsExpired(address indexed account, uint64 seq, uint256 epoch, uint256 amount);
    /// @dev `amount` points of `epoch` moved from `from` to `to`, keeping their epoch (a transfer, or part of an
    /// {AccountMigrated}).
    event PointsTransferred(address indexed from, address indexed to, uint64 seq, uint256 epoch, uint256 amount);
    /// @dev `customer` revoked the consent it signed with `nonce` (keyed: the key is `nonce >> 64`).
    event ConsentRevoked(address indexed customer, uint64 seq, uint256 nonce);

    // ------------------------------------------------------------------ ledger entries: governance

    /// @dev The treasury changed the settlement value of one point (it applies to later entries only).
    event SettlementValueChanged(uint64 seq, uint256 previousValue, uint256 value);
    /// @dev The admin switched transfers between customers on or off.
    event TransfersEnabledChanged(uint64 seq, bool enabled);
    /// @dev `role` was granted to (`granted`) or revoked from `account` by `sender`.
    event RoleChanged(bytes32 indexed role, address indexed account, uint64 seq, bool granted, address sender);
    /// @dev A step of the two-step admin handover: `kind` 1 handover to `newAdmin` scheduled for `schedule`,
    /// 2 handover cancelled, 3 admin delay change to `delay` scheduled for `schedule`, 4 delay change cancelled.
    /// The constructor records the initial delay as kind 3 with `schedule` 0 (in force at once).
    /// The handover itself is the pair of {RoleChanged} entries of the acceptance.
    event AdminHandoverChanged(uint64 seq, uint8 kind, address newAdmin, uint48 delay, uint48 schedule);
    /// @dev The ledger was paused (`paused` true) or resumed; `pausedDuration` is the time spent paused before
    /// this pause began (on pause) or including it (on resume).
    event PauseChanged(uint64 seq, bool paused, uint256 pausedDuration);
}
