// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC7818} from "./IERC7818.sol";

/**
 * @title ILoyaltyLedger
 * @dev Errors, events and the external surface of the coalition's point ledger.
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
interface ILoyaltyLedger is IERC7818 {
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
        int256 settledPoints;
        int256 settledValue;
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
    /// @dev A batch with `recipients` recipients and `amounts` amounts.
    error LedgerBatchLengthMismatch(uint256 recipients, uint256 amounts);
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

    /// @dev `amount` points of `epoch` were issued to `to` by partner `partnerId`.
    event PointsIssued(
        uint32 indexed partnerId,
        address indexed to,
        uint64 seq,
        uint256 epoch,
        uint256 amount,
        bytes32 ref,
        uint16 reason,
        bytes32 ruleHash
    );
    /// @dev Partner `partnerId` issued a batch of `count` items, `total` points of `epoch`, under one reference.
    /// The items are the {PointsIssuedInBatch} entries numbered `seq + 1` … `seq + count` that follow it.
    event PointsBatchIssued(
        uint32 indexed partnerId,
        uint64 seq,
        uint256 epoch,
        bytes32 ref,
        uint16 reason,
        bytes32 ruleHash,
        uint256 count,
        uint256 total
    );
    /// @dev One item of the batch announced by the preceding {PointsBatchIssued}: `amount` points to `to`.
    event PointsIssuedInBatch(address indexed to, uint64 seq, uint256 amount);
    /// @dev `amount` points of `epoch` held by `customer` were redeemed at partner `partnerId`.
    /// A redemption spanning several epochs is several entries with the same reference and nonce.
    event PointsRedeemed(
        uint32 indexed partnerId,
        address indexed customer,
        uint64 seq,
        uint256 epoch,
        uint256 amount,
        bytes32 ref,
        uint256 nonce
    );
    /// @dev `amount` expired points of `epoch` held by `account` were removed from the supply.
    event PointsExpired(address indexed account, uint64 seq, uint256 epoch, uint256 amount);
    /// @dev `amount` points of `epoch` moved from `from` to `to`, keeping their epoch.
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

    // ------------------------------------------------------------------ administration

    function registerPartner(
        uint32 partnerId,
        address operator,
        address settlement,
        bool canIssue,
        bool canAccept,
        uint256 issuanceAllowance
    ) external;

    function increasePartnerAllowance(uint32 partnerId, uint256 amount) external;

    function decreasePartnerAllowance(uint32 partnerId, uint256 amount) external;

    function rotatePartnerOperator(uint32 partnerId, address newOperator) external;

    function setPartnerRights(uint32 partnerId, bool canIssue, bool canAccept) external;

    function setPartnerSettlementAddress(uint32 partnerId, address settlement) external;

    function suspendPartner(uint32 partnerId) external;

    function reactivatePartner(uint32 partnerId) external;

    function offboardPartner(uint32 partnerId) external;

    function setSettlementValue(uint256 value) external;

    function recordSettlement(uint32 partnerId, int256 points, int256 value, bytes32 paymentRef) external;

    function setTransfersEnabled(bool enabled) external;

    function pause() external;

    function unpause() external;

    // ------------------------------------------------------------------ partners

    function issue(address to, uint256 amount, bytes32 ref, uint16 reason, bytes32 ruleHash) external;

    function issueBatch(
        address[] calldata recipients,
        uint256[] calldata amounts,
        bytes32 batchReference,
        uint16 reason,
        bytes32 ruleHash
    ) external;

    function redeem(
        address customer,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    // ------------------------------------------------------------------ customers and anyone

    function revokeConsent(uint256 nonce) external;

    function cancelConsent(address customer, uint256 nonce, bytes calldata signature) external;

    function sweepExpired(address[] calldata accounts) external returns (uint256 swept);

    // ------------------------------------------------------------------ views

    function outstandingSupply() external view returns (uint256);

    function epochSupply(uint256 epoch) external view returns (uint256);

    function totalIssued() external view returns (uint256);

    function totalRedeemed() external view returns (uint256);

    function totalExpired() external view returns (uint256);

    function pendingExpiry() external view returns (uint256);

    function liveBalances(address account) external view returns (uint256[] memory epochs, uint256[] memory amounts);

    function genesisTimestamp() external view returns (uint256);

    function ledgerClock() external view returns (uint256);

    function pausedDuration() external view returns (uint256);

    function epochExpiresAt(uint256 epoch) external view returns (uint256);

    function ledgerHead() external view returns (bytes32);

    function ledgerSequence() external view returns (uint64);

    function partner(uint32 partnerId) external view returns (PartnerView memory);

    function partnerIdOf(address operator) external view returns (uint32);

    function partnerIds() external view returns (uint32[] memory);

    function partnerPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue);

    function partnerOpenPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue);

    function coalitionPosition() external view returns (int256 netPoints, int256 netValue);

    function coalitionOpenPosition() external view returns (int256 netPoints, int256 netValue);

    function settlementValue() external view returns (uint256);

    function transfersEnabled() external view returns (bool);

    function referenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function redemptionReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function settlementReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function redemptionDigest(
        address customer,
        uint32 partnerId,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32);

    function cancellationDigest(address customer, uint256 nonce) external view returns (bytes32);
}
