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
 */
interface ILoyaltyLedger is IERC7818 {
    // ------------------------------------------------------------------ types

    /// @dev A partner brand of the coalition, as returned by {partner}.
    struct PartnerView {
        uint32 partnerId;
        address operator;
        address settlement;
        bool active;
        bool canIssue;
        bool canAccept;
        uint256 allowance;
        uint256 issued;
        uint256 redeemed;
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
    /// @dev `operator` is the zero address, already operates another partner, or holds the admin role.
    error LedgerInvalidOperator(address operator);
    /// @dev `settlement` is the zero address.
    error LedgerInvalidSettlementAddress(address settlement);
    /// @dev Partner `partnerId` is suspended.
    error LedgerPartnerSuspended(uint32 partnerId);
    /// @dev Partner `partnerId` is active, so it cannot be reactivated.
    error LedgerPartnerNotSuspended(uint32 partnerId);
    /// @dev Partner `partnerId` has no right to issue points.
    error LedgerPartnerCannotIssue(uint32 partnerId);
    /// @dev Partner `partnerId` has no right to accept (redeem) points.
    error LedgerPartnerCannotAccept(uint32 partnerId);
    /// @dev Issuing `needed` points would exceed partner `partnerId`'s remaining `allowance`.
    error LedgerAllowanceExceeded(uint32 partnerId, uint256 allowance, uint256 needed);
    /// @dev Partner `partnerId` already used `ref` (issue and batch references, and redemption references,
    /// are two separate namespaces per partner).
    error LedgerReferenceUsed(uint32 partnerId, bytes32 ref);
    /// @dev An amount of zero points.
    error LedgerZeroAmount();
    /// @dev `amount` is above the largest single amount `max`.
    error LedgerAmountTooLarge(uint256 amount, uint256 max);
    /// @dev A batch with `recipients` recipients and `amounts` amounts.
    error LedgerBatchLengthMismatch(uint256 recipients, uint256 amounts);
    /// @dev A batch without recipients.
    error LedgerEmptyBatch();
    /// @dev `account` holds `balance` live points and `needed` were asked for.
    error LedgerInsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @dev The customer's consent expired at `deadline`.
    error LedgerExpiredSignature(uint256 deadline);
    /// @dev The consent for `customer` was signed by `signer`.
    error LedgerInvalidSigner(address customer, address signer);
    /// @dev Transfers between customers are switched off.
    error LedgerTransfersDisabled();
    /// @dev `epoch` lies after the current epoch `current`.
    error LedgerFutureEpoch(uint256 epoch, uint256 current);
    /// @dev Deployment parameters out of range.
    error LedgerInvalidConfiguration(uint256 epochLength, uint256 validityDuration);

    // ------------------------------------------------------------------ ledger entries

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
    /// @dev The admin set partner `partnerId`'s remaining issuance allowance.
    event PartnerAllowanceChanged(uint32 indexed partnerId, uint64 seq, uint256 previousAllowance, uint256 allowance);
    /// @dev Partner `partnerId` was suspended (`active` false) or reactivated (`active` true).
    event PartnerStatusChanged(uint32 indexed partnerId, uint64 seq, bool active);
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
    /// @dev The admin changed the settlement value of one point.
    event SettlementValueChanged(uint64 seq, uint256 previousValue, uint256 value);
    /// @dev The admin switched transfers between customers on or off.
    event TransfersEnabledChanged(uint64 seq, bool enabled);

    // ------------------------------------------------------------------ administration

    function registerPartner(
        uint32 partnerId,
        address operator,
        address settlement,
        bool canIssue,
        bool canAccept,
        uint256 issuanceAllowance
    ) external;

    function setPartnerAllowance(uint32 partnerId, uint256 newAllowance) external;

    function suspendPartner(uint32 partnerId) external;

    function reactivatePartner(uint32 partnerId) external;

    function setSettlementValue(uint256 value) external;

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

    // ------------------------------------------------------------------ anyone

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

    function epochExpiresAt(uint256 epoch) external view returns (uint256);

    function ledgerHead() external view returns (bytes32);

    function ledgerSequence() external view returns (uint64);

    function partner(uint32 partnerId) external view returns (PartnerView memory);

    function partnerIdOf(address operator) external view returns (uint32);

    function partnerIds() external view returns (uint32[] memory);

    function partnerPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue);

    function coalitionPosition() external view returns (int256 netPoints, int256 netValue);

    function settlementValue() external view returns (uint256);

    function transfersEnabled() external view returns (bool);

    function referenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function redemptionReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function redemptionDigest(
        address customer,
        uint32 partnerId,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32);
}
