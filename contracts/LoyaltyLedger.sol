// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {NoncesKeyed} from "@openzeppelin/contracts/utils/NoncesKeyed.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {ILoyaltyLedger} from "./interfaces/ILoyaltyLedger.sol";

/**
 * @title LoyaltyLedger
 * @notice One coalition point currency: ERC-20 readable, expiring by ERC-7818 time-based epochs on a clock that
 * pauses stop, issued by partner brands within their allowance, redeemed at accepting partners with the
 * customer's EIP-712 consent, with per-partner settlement counters valued when each entry happens, closed
 * settlement periods, separated roles, and a numbered, hash-chained ledger of every entry.
 *
 * Storage of balances: each account has `validityDuration` buckets; points of epoch `e` live in bucket
 * `e % validityDuration`, tagged with `e`. The live epochs are always `validityDuration` consecutive numbers, so
 * they never share a bucket; a bucket still holding an expired epoch when a live epoch needs it is expired
 * (with its event) before it is reused. Every balance change goes through {_update}, which emits `Transfer`.
 *
 * Powers: the default admin (two-step handover with a delay; a TimelockController in production) grants
 * roles and keeps the partner registry; the treasury sets the settlement value and records settlements; the
 * pauser pauses, resumes and suspends partners. No partner operator holds a role, and no role holder operates
 * a partner. Every role change and pause is a ledger entry.
 */
contract LoyaltyLedger is
    ILoyaltyLedger,
    IERC20Metadata,
    IERC20Errors,
    AccessControlDefaultAdminRules,
    Pausable,
    NoncesKeyed,
    EIP712
{
    /// @notice May pause and resume the ledger and suspend a partner in an incident.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice Sets the settlement value, records settlements and may cut allowances.
    bytes32 public constant TREASURY_ROLE = keccak256("TREASURY_ROLE");

    /// @notice The EIP-712 type a customer signs to consent to a redemption.
    bytes32 public constant REDEMPTION_TYPEHASH = keccak256(
        "Redemption(address customer,uint32 partnerId,uint256 amount,bytes32 reference,uint256 nonce,uint256 deadline)"
    );
    /// @notice The EIP-712 type a customer signs to revoke the consent it signed with `nonce`.
    bytes32 public constant CANCELLATION_TYPEHASH = keccak256("ConsentCancellation(address customer,uint256 nonce)");

    /// @notice The largest amount of points one issue, batch item or redemption may carry.
    uint256 public constant MAX_AMOUNT = type(uint64).max;
    /// @notice The largest remaining allowance, and the most points one partner may issue or redeem in all.
    uint256 public constant MAX_ALLOWANCE = type(uint64).max;
    /// @notice The largest settlement value of one point: positions stay below 2^128 in value.
    uint256 public constant MAX_SETTLEMENT_VALUE = type(uint64).max;
    /// @notice The largest validity in epochs: balanceOf, redeem and sweep of one account read at most this
    /// many buckets (see contracts/README.md for the gas at the bound).
    uint256 public constant MAX_VALIDITY = 120;
    /// @notice The gas an ERC-1271 wallet gets to check a signature.
    uint256 public constant ERC1271_GAS_LIMIT = 100_000;

    uint8 private constant _HANDOVER_SCHEDULED = 1;
    uint8 private constant _HANDOVER_CANCELLED = 2;
    uint8 private constant _DELAY_SCHEDULED = 3;
    uint8 private constant _DELAY_CANCELLED = 4;

    struct Bucket {
        uint64 epoch;
        uint192 amount;
    }

    /// @dev What an operator key may do, packed in one slot so an issue reads it with one SLOAD. Moves to the
    /// new key on rotation.
    struct OperatorAuth {
        uint32 partnerId;
        PartnerStatus status;
        bool canIssue;
        bool canAccept;
    }

    /// @dev A partner's remaining allowance and issued counters, in one slot: an issue reads and writes it
    /// once. Points fit 64 bits (MAX_ALLOWANCE), and value below 2^64 * 2^64 = 2^128.
    struct Issuance {
        uint64 allowance;
        uint64 issued;
        uint128 issuedValue;
    }

    struct PartnerRecord {
        address operator;
        address settlement;
        Issuance issuance;
        uint64 redeemed;
        uint128 redeemedValue;
        int256 settledPoints;
        int256 settledValue;
    }

    /// @dev Sequence number and running totals, packed in one slot.
    struct Totals {
        uint64 seq;
        uint96 issued;
        uint96 redeemed;
    }

    /// @dev The pause state, the ledger clock's offset and the per-entry settings, in one slot: an issue
    /// reads it once for the pause check, the epoch and the settlement value.
    struct Clock {
        bool paused;
        uint64 pausedAt;
        uint64 pausedTotal;
        uint64 settlementValue;
        bool transfersEnabled;
    }

    string private _name;
    string private _symbol;
    uint256 private immutable _genesis;
    uint256 private immutable _epochLength;
    uint256 private immutable _validity;

    mapping(address account => mapping(uint256 slot => Bucket)) private _buckets;
    mapping(uint256 epoch => uint256) private _epochSupply;
    mapping(address owner => mapping(address spender => uint256)) private _allowances;

    mapping(address operator => OperatorAuth) private _operators;
    mapping(address account => uint256) private _rolesHeld;
    mapping(uint32 partnerId => PartnerRecord) private _partners;
    uint32[] private _partnerIds;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) private _referenceUsed;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) private _redemptionReferenceUsed;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) private _settlementReferenceUsed;

    Totals private _totals;
    Clock private _clock;
    uint256 private _totalExpired;
    bytes32 private _head;
    int256 private _totalSettledPoints;
    int256 private _totalSettledValue;

    /**
     * @param admin the default admin (a TimelockController in production): role grants and the registry.
     * @param treasury receives the treasury role (settlement value and settlement records).
     * @param pauser receives the pauser role.
     * @param adminDelay seconds between scheduling an admin handover and its acceptance.
     * @param epochLength_ seconds of ledger clock per epoch (e.g. 30 days).
     * @param validity_ epochs points stay valid, counting the epoch they are credited in (e.g. 12).
     * @param settlementValue_ the settlement value of one point, in the coalition's settlement unit.
     *
     * Requirements: `epochLength_` > 0, 0 < `validity_` <= MAX_VALIDITY, `admin` non-zero,
     * `settlementValue_` <= MAX_SETTLEMENT_VALUE. A zero `treasury` or `pauser` leaves that role unheld.
     * Emits {RoleChanged} for each role granted, then {SettlementValueChanged} (from 0) and
     * {AdminHandoverChanged} (kind 3 with schedule 0: the initial delay, in force at once).
     */
    constructor(
        string memory name_,
        string memory symbol_,
        address admin,
        address treasury,
        address pauser,
        uint48 adminDelay,
        uint256 epochLength_,
        uint256 validity_,
        uint256 settlementValue_
    ) EIP712("LoyaltyLedger", "1") AccessControlDefaultAdminRules(adminDelay, admin) {
        if (epochLength_ == 0 || validity_ == 0 || validity_ > MAX_VALIDITY) {
            revert LedgerInvalidConfiguration(epochLength_, validity_);
        }
        _checkSettlementValue(settlementValue_);
        _name = name_;
        _symbol = symbol_;
        _genesis = block.timestamp;
        _epochLength = epochLength_;
        _validity = validity_;
        _clock.settlementValue = uint64(settlementValue_);
        if (treasury != address(0)) _grantRole(TREASURY_ROLE, treasury);
        if (pauser != address(0)) _grantRole(PAUSER_ROLE, pauser);
        // The initial settlement value and admin delay are entries too, so that every figure can be rebuilt
        // from the logs alone (no call at the deployment block, which only an archive node answers).
        uint64 seq = _nextSeq();
        emit SettlementValueChanged(seq, 0, settlementValue_);
        _record(keccak256(abi.encode(SettlementValueChanged.selector, seq, 0, settlementValue_)));
        _recordHandover(_DELAY_SCHEDULED, address(0), adminDelay, 0);
    }

    // =================================================================== administration: the registry

    /**
     * @notice Registers partner `partnerId`, operated by `operator`, paid out to `settlement`.
     * Requirements: admin role; `partnerId` non-zero and unused; `operator` non-zero, never an operator, and
     * holding no role; `settlement` non-zero; `allowance` at most MAX_ALLOWANCE.
     * Emits {PartnerRegistered}.
     */
    function registerPartner(
        uint32 partnerId,
        address operator,
        address settlement,
        bool canIssue,
        bool canAccept,
        uint256 issuanceAllowance
    ) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (partnerId == 0) revert LedgerInvalidPartnerId(partnerId);
        if (_partners[partnerId].operator != address(0)) revert LedgerPartnerExists(partnerId);
        _checkNewOperator(operator);
        if (settlement == address(0)) revert LedgerInvalidSettlementAddress(settlement);
        if (issuanceAllowance > MAX_ALLOWANCE) revert LedgerAmountTooLarge(issuanceAllowance, MAX_ALLOWANCE);
        _operators[operator] = OperatorAuth(partnerId, PartnerStatus.Active, canIssue, canAccept);
        PartnerRecord storage record = _partners[partnerId];
        record.operator = operator;
        record.settlement = settlement;
        record.issuance.allowance = uint64(issuanceAllowance);
        _partnerIds.push(partnerId);
        uint64 seq = _nextSeq();
        emit PartnerRegistered(partnerId, operator, seq, settlement, canIssue, canAccept, issuanceAllowance);
        _record(
            keccak256(
                abi.encode(
                    PartnerRegistered.selector,
                    partnerId,
                    operator,
                    seq,
                    settlement,
                    canIssue,
                    canAccept,
                    issuanceAllowance
                )
            )
        );
    }

    /**
     * @notice Tops up partner `partnerId`'s remaining issuance allowance by `amount` (a prepaid block).
     * Requirements: admin role; the partner exists and is not offboarded; 0 < `amount`; the new allowance at
     * most MAX_ALLOWANCE.
     * Emits {PartnerAllowanceChanged}.
     */
    function increasePartnerAllowance(uint32 partnerId, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _liveAuth(partnerId);
        Issuance storage issuance = _partners[partnerId].issuance;
        if (amount == 0) revert LedgerZeroAmount();
        uint256 previous = issuance.allowance;
        uint256 room = MAX_ALLOWANCE - previous;
        if (amount > room) revert LedgerAmountTooLarge(amount, room);
        // amount <= room: the sum cannot overflow
        unchecked {
            _recordAllowance(partnerId, issuance, previous, previous + amount);
        }
    }

    /**
     * @notice Cuts partner `partnerId`'s remaining issuance allowance by `amount`. It fails rather than
     * overwrites when the partner spent part of it first, so a cut never hands back what was spent.
     * Requirements: admin or treasury role; the partner exists; 0 < `amount` <= the remaining allowance.
     * Emits {PartnerAllowanceChanged}.
     */
    function decreasePartnerAllowance(uint32 partnerId, uint256 amount) external {
        _checkEitherRole(DEFAULT_ADMIN_ROLE, TREASURY_ROLE);
        Issuance storage issuance = _existingPartner(partnerId).issuance;
        if (amount == 0) revert LedgerZeroAmount();
        uint256 previous = issuance.allowance;
        if (amount > previous) revert LedgerAllowanceExceeded(partnerId, previous, amount);
        // amount <= previous: cannot underflow
        unchecked {
            _recordAllowance(partnerId, issuance, previous, previous - amount);
        }
    }

    /**
     * @notice Moves partner `partnerId` to the operator key `newOperator`, keeping its id, references,
     * allowance and counters; the old key is refused from this block on.
     * Requirements: the admin role, or the caller is the partner's current operator and the partner is active;
     * the partner is not offboarded; `newOperator` non-zero, never an operator, and holding no role.
     * Emits {PartnerOperatorChanged}.
     */
    function rotatePartnerOperator(uint32 partnerId, address newOperator) external {
        PartnerRecord storage record = _existingPartner(partnerId);
        address previous = record.operator;
        OperatorAuth memory auth = _operators[previous];
        bool bySelf = msg.sender == previous && auth.status == PartnerStatus.Active;
        if (!bySelf && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert LedgerUnauthorizedRotation(msg.sender, partnerId);
        }
        if (auth.status == PartnerStatus.Offboarded) revert LedgerPartnerOffboarded(partnerId);
        _checkNewOperator(newOperator);
        _operators[newOperator] = auth;
        // the old key keeps a tombstone (its partner id, status None, no rights): it is refused with
        // LedgerRotatedOperator and can be neither registered again nor made a role holder
        _operators[previous] = OperatorAuth(partnerId, PartnerStatus.None, false, false);
        record.operator = newOperator;
        uint64 seq = _nextSeq();
        emit PartnerOperatorChanged(partnerId, newOperator, seq, previous);
        _record(keccak256(abi.encode(PartnerOperatorChanged.selector, partnerId, newOperator, seq, previous)));
    }

    /**
     * @notice Sets partner `partnerId`'s rights to issue and to accept.
     * Requirements: admin role; the partner exists and is not offboarded.
     * Emits {PartnerRightsChanged}.
     */
    function setPartnerRights(uint32 partnerId, bool canIssue, bool canAccept)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        OperatorAuth storage auth = _liveAuth(partnerId);
        auth.canIssue = canIssue;
        auth.canAccept = canAccept;
        uint64 seq = _nextSeq();
        emit PartnerRightsChanged(partnerId, seq, canIssue, canAccept);
        _record(keccak256(abi.encode(PartnerRightsChanged.selector, partnerId, seq, canIssue, canAccept)));
    }

    /**
     * @notice Sets the address partner `partnerId` is paid out to.
     * Requirements: admin role; the partner exists; `settlement` non-zero.
     * Emits {PartnerSettlementAddressChanged}.
     */
    function setPartnerSettlementAddress(uint32 partnerId, address settlement)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        PartnerRecord storage record = _existingPartner(partnerId);
        if (settlement == address(0)) revert LedgerInvalidSettlementAddress(settlement);
        record.settlement = settlement;
        uint64 seq = _nextSeq();
        emit PartnerSettlementAddressChanged(partnerId, seq, settlement);
        _record(keccak256(abi.encode(PartnerSettlementAddressChanged.selector, partnerId, seq, settlement)));
    }

    /**
     * @notice Suspends partner `partnerId`: it can neither issue, redeem nor rotate its own key until
     * reactivated. Removes power only, so the pauser may do it at once in an incident.
     * Requirements: admin or pauser role; the partner exists and is active.
     * Emits {PartnerStatusChanged}.
     */
    function suspendPartner(uint32 partnerId) external {
        _checkEitherRole(DEFAULT_ADMIN_ROLE, PAUSER_ROLE);
        OperatorAuth storage auth = _operators[_existingPartner(partnerId).operator];
        _requireActive(partnerId, auth.status);
        _setStatus(partnerId, auth, PartnerStatus.Suspended);
    }

    /**
     * @notice Reactivates suspended partner `partnerId`.
     * Requirements: admin role; the partner exists and is suspended.
     * Emits {PartnerStatusChanged}.
     */
    function reactivatePartner(uint32 partnerId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        OperatorAuth storage auth = _liveAuth(partnerId);
        if (auth.status != PartnerStatus.Suspended) revert LedgerPartnerNotSuspended(partnerId);
        _setStatus(partnerId, auth, PartnerStatus.Active);
    }

    /**
     * @notice Offboards partner `partnerId` for good: no issuance, redemption or rotation any more, its
     * remaining allowance is dropped; its history, counters and positions stay, and settlements can still be
     * recorded against it.
     * Requirements: admin role; the partner exists and is not offboarded.
     * Emits {PartnerAllowanceChanged} (if an allowance remained) and {PartnerStatusChanged}.
     */
    function offboardPartner(uint32 partnerId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        OperatorAuth storage auth = _liveAuth(partnerId);
        Issuance storage issuance = _partners[partnerId].issuance;
        if (issuance.allowance != 0) _recordAllowance(partnerId, issuance, issuance.allowance, 0);
        _setStatus(partnerId, auth, PartnerStatus.Offboarded);
    }

    // =================================================================== administration: money and switches

    /**
     * @notice Sets the settlement value of one point for entries from now on (past entries keep theirs).
     * Requirements: treasury role; `value` <= MAX_SETTLEMENT_VALUE.
     * Emits {SettlementValueChanged}.
     */
    function setSettlementValue(uint256 value) external onlyRole(TREASURY_ROLE) {
        _checkSettlementValue(value);
        uint256 previous = _clock.settlementValue;
        _clock.settlementValue = uint64(value);
        uint64 seq = _nextSeq();
        emit SettlementValueChanged(seq, previous, value);
        _record(keccak256(abi.encode(SettlementValueChanged.selector, seq, previous, value)));
    }

    /**
     * @notice Records a settlement with partner `partnerId` (a closed period): `points` and `value` leave its
     * open position, positive when the coalition paid the partner, negative when the partner paid.
     * Requirements: treasury role; the partner exists (offboarded too); `paymentRef` not yet used for a
     * settlement with this partner; `points` or `value` non-zero; |points| < 2^96 and |value| < 2^160.
     * Emits {SettlementRecorded}.
     */
    function recordSettlement(uint32 partnerId, int256 points, int256 value, bytes32 paymentRef)
        external
        onlyRole(TREASURY_ROLE)
    {
        PartnerRecord storage record = _existingPartner(partnerId);
        if (points == 0 && value == 0) revert LedgerZeroAmount();
        _checkMagnitude(points, type(uint96).max);
        _checkMagnitude(value, type(uint160).max);
        _useReference(_settlementReferenceUsed, partnerId, paymentRef);
        record.settledPoints += points;
        record.settledValue += value;
        _totalSettledPoints += points;
        _totalSettledValue += value;
        uint64 seq = _nextSeq();
        emit SettlementRecorded(partnerId, seq, points, value, paymentRef);
        _record(keccak256(abi.encode(SettlementRecorded.selector, partnerId, seq, points, value, paymentRef)));
    }

    /**
     * @notice Switches transfers between customers on or off (off at deployment).
     * Requirements: admin role.
     * Emits {TransfersEnabledChanged}.
     */
    function setTransfersEnabled(bool enabled) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _clock.transfersEnabled = enabled;
        uint64 seq = _nextSeq();
        emit TransfersEnabledChanged(seq, enabled);
        _record(keccak256(abi.encode(TransfersEnabledChanged.selector, seq, enabled)));
    }

    /**
     * @notice Stops every change of balances, references and consents, and the ledger's clock: no point
     * expires while paused. Administration goes on.
     * Requirements: pauser role; not paused.
     * Emits {Paused} and {PauseChanged}.
     */
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /**
     * @notice Ends a pause; every later expiry moves by the pause's length.
     * Requirements: pauser role; paused.
     * Emits {Unpaused} and {PauseChanged}.
     */
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // =================================================================== partners

    /**
     * @notice Issues `amount` points of the current epoch to `to`.
     * @param ref the partner's reference (e.g. the hash of its order id), usable once per partner.
     * @param reason why the points were earned (purchase, review, referral, birthday, ...; see contracts/README.md).
     * @param ruleHash hash of the earning rule that computed `amount`, so it can be recomputed later.
     * Requirements: not paused; the caller operates an active partner with the right to issue; `to` non-zero;
     * 0 < `amount` <= MAX_AMOUNT and within the partner's allowance; `ref` unused by the partner.
     * Emits {Transfer} and {PointsIssued} (after {PointsExpired} if `to`'s bucket still held expired points).
     */
    function issue(address to, uint256 amount, bytes32 ref, uint16 reason, bytes32 ruleHash)
        external
        whenNotPaused
    {
        _checkAmount(amount);
        uint32 partnerId = _spendAllowance(msg.sender, amount);
        _useReference(_referenceUsed, partnerId, ref);
        _issue(partnerId, to, amount, ref, reason, ruleHash, currentEpoch());
    }

    /**
     * @notice Issues `amounts[i]` points of the current epoch to each `recipients[i]`, under one reference.
     * Requirements: as {issue} for every item; equal, non-zero lengths; the sum within the allowance.
     * Emits {PointsBatchIssued}, then {Transfer} and {PointsIssuedInBatch} per recipient (after any
     * {PointsExpired} for a recipient's bucket that still held expired points).
     */
    function issueBatch(
        address[] calldata recipients,
        uint256[] calldata amounts,
        bytes32 batchReference,
        uint16 reason,
        bytes32 ruleHash
    ) external whenNotPaused {
        uint256 count = recipients.length;
        if (count != amounts.length) revert LedgerBatchLengthMismatch(count, amounts.length);
        if (count == 0) revert LedgerEmptyBatch();
        uint256 total;
        for (uint256 i; i < count; ++i) {
            _checkAmount(amounts[i]);
            total += amounts[i];
        }
        uint32 partnerId = _spendAllowance(msg.sender, total);
        _useReference(_referenceUsed, partnerId, batchReference);
        uint256 epoch = currentEpoch();
        // Retire expired points in the recipients' target buckets first, so that no expiry entry falls
        // between the batch's items and they are numbered seq + 1 … seq + count.
        for (uint256 i; i < count; ++i) {
            _retireStaleBucket(recipients[i], epoch);
        }
        uint64 seq = _nextSeq();
        emit PointsBatchIssued(partnerId, seq, epoch, batchReference, reason, ruleHash, count, total);
        _record(
            keccak256(
                abi.encode(
                    PointsBatchIssued.selector, partnerId, seq, epoch, batchReference, reason, ruleHash, count, total
                )
            )
        );
        for (uint256 i; i < count; ++i) {
            address to = recipients[i];
            uint256 amount = amounts[i];
            if (to == address(0)) revert ERC20InvalidReceiver(to);
            _update(address(0), to, epoch, amount);
            seq = _nextSeq();
            emit PointsIssuedInBatch(to, seq, amount);
            _record(keccak256(abi.encode(PointsIssuedInBatch.selector, to, seq, amount)));
        }
    }

    /**
     * @notice Redeems `amount` of `customer`'s live points at the calling partner, oldest epochs first, with
     * the customer's EIP-712 `Redemption` signature (ECDSA for accounts without code and EIP-7702-delegated
     * ones; ERC-1271 for contract wallets when ECDSA does not recover the customer).
     * Requirements: not paused; the caller operates an active partner with the right to accept;
     * 0 < `amount` <= MAX_AMOUNT; `block.timestamp` <= `deadline`; `signature` by `customer` over this
     * chain, this contract and these values; `nonce` is the next nonce of its key (`nonce >> 64`, e.g. the
     * partner id) for the customer; `ref` not yet used by the partner for a redemption; `customer` holds
     * `amount` live points.
     * Emits {Transfer} and {PointsRedeemed} per epoch spent.
     */
    function redeem(
        address customer,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external whenNotPaused {
        uint32 partnerId = _acceptor(msg.sender);
        _checkAmount(amount);
        if (block.timestamp > deadline) revert LedgerExpiredSignature(deadline);
        _checkConsent(customer, redemptionDigest(customer, partnerId, amount, ref, nonce, deadline), signature);
        _useCheckedNonce(customer, nonce);
        _useReference(_redemptionReferenceUsed, partnerId, ref);

        _redeem(partnerId, customer, amount, ref, nonce);
    }

    // =================================================================== customers and anyone

    /**
     * @notice Revokes the caller's consent signed with `nonce` (a self-custody customer), so it can never be
     * redeemed. Works while paused.
     * Requirements: `nonce` is the next nonce of its key for the caller.
     * Emits {ConsentRevoked}.
     */
    function revokeConsent(uint256 nonce) external {
        _revokeConsent(msg.sender, nonce);
    }

    /**
     * @notice Revokes `customer`'s consent signed with `nonce`, with the customer's EIP-712
     * `ConsentCancellation` signature; anyone may submit it (gasless for the customer). Works while paused.
     * Requirements: `signature` by `customer` over this chain, this contract, `customer` and `nonce`; `nonce`
     * is the next nonce of its key for the customer.
     * Emits {ConsentRevoked}.
     */
    function cancelConsent(address customer, uint256 nonce, bytes calldata signature) external {
        _checkConsent(customer, cancellationDigest(customer, nonce), signature);
        _revokeConsent(customer, nonce);
    }

    /**
     * @notice Removes every expired point held by `accounts` from the supply, one {PointsExpired} entry per
     * account and epoch, and returns how many points were removed. Anyone may call it.
     * Requirements: not paused.
     * Emits {Transfer} and {PointsExpired} per expired bucket.
     */
    function sweepExpired(address[] calldata accounts) external whenNotPaused returns (uint256 swept) {
        uint256 current = currentEpoch();
        for (uint256 i; i < accounts.length; ++i) {
            mapping(uint256 => Bucket) storage buckets = _buckets[accounts[i]];
            for (uint256 slot; slot < _validity; ++slot) {
                Bucket memory bucket = buckets[slot];
                if (bucket.amount != 0 && _isExpired(bucket.epoch, current)) {
                    swept += _expire(accounts[i], bucket.epoch, bucket.amount);
                }
            }
        }
    }

    // =================================================================== ERC-20

    /// @inheritdoc IERC20Metadata
    function name() external view returns (string memory) {
        return _name;
    }

    /// @inheritdoc IERC20Metadata
    function symbol() external view returns (string memory) {
        return _symbol;
    }

    /// @notice Points are whole: 0 decimals.
    function decimals() external pure returns (uint8) {
        return 0;
    }

    /// @notice The live points in circulation, exactly: equal to {outstandingSupply}.
    function totalSupply() external view returns (uint256) {
        return outstandingSupply();
    }

    /// @notice The live (unexpired) points of `account`.
    function balanceOf(address account) public view returns (uint256 balance) {
        uint256 current = currentEpoch();
        for (uint256 epoch = _firstLiveEpoch(current); epoch <= current; ++epoch) {
            balance += _heldAt(account, epoch);
        }
    }

    /// @inheritdoc IERC20
    function allowance(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender];
    }

    /**
     * @notice Lets `spender` move `value` of the caller's points (when transfers are on).
     * Requirements: `spender` non-zero; while paused, only a reduction.
     * Emits {Approval}.
     */
    function approve(address spender, uint256 value) external returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(spender);
        if (value > _allowances[msg.sender][spender]) _requireNotPaused();
        _allowances[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /**
     * @notice Moves `value` live points from the caller to `to`, oldest epochs first, keeping their epochs.
     * Requirements: not paused; transfers on; `to` non-zero; the caller holds `value` live points.
     * Emits {Transfer} and {PointsTransferred} per epoch moved.
     */
    function transfer(address to, uint256 value) external whenNotPaused returns (bool) {
        _checkTransfer(msg.sender, to);
        _transferOldestFirst(msg.sender, to, value);
        return true;
    }

    /**
     * @notice Moves `value` live points from `from` to `to`, spending the caller's allowance.
     * Requirements: as {transfer}; `from` non-zero; allowance of at least `value` (unlimited when
     * type(uint256).max).
     * Emits {Transfer} and {PointsTransferred} per epoch moved.
     */
    function transferFrom(address from, address to, uint256 value) external whenNotPaused returns (bool) {
        _checkTransfer(from, to);
        _spendTokenAllowance(from, msg.sender, value);
        _transferOldestFirst(from, to, value);
        return true;
    }

    // =================================================================== ERC-7818

    /// @notice `account`'s points of `epoch`; 0 once the epoch has expired.
    function balanceOfAtEpoch(uint256 epoch, address account) external view returns (uint256) {
        if (_isExpired(epoch, currentEpoch())) return 0;
        return _heldAt(account, epoch);
    }

    /// @notice The epoch the ledger's clock is in (the clock stands still while paused; see {ledgerClock}).
    function currentEpoch() public view returns (uint256) {
        return ledgerClock() / _epochLength;
    }

    /// @notice Seconds of ledger clock per epoch.
    function epochLength() external view returns (uint256) {
        return _epochLength;
    }

    /// @notice Epochs are measured in seconds (of the ledger's clock: `block.timestamp` minus pauses).
    function epochType() external pure returns (EPOCH_TYPE) {
        return EPOCH_TYPE.TIME_BASED;
    }

    /// @notice Points of epoch `e` are valid during epochs `e` … `e + validityDuration() - 1`.
    function validityDuration() external view returns (uint256) {
        return _validity;
    }

    /// @notice True when `epoch + validityDuration() <= currentEpoch()`.
    function isEpochExpired(uint256 epoch) external view returns (bool) {
        return _isExpired(epoch, currentEpoch());
    }

    /**
     * @notice Moves `value` of the caller's points of `epoch` to `to`.
     * Requirements: not paused; transfers on; `epoch` live; `to` non-zero; enough points in `epoch`.
     * Emits {Transfer} and {PointsTransferred}.
     */
    function transferAtEpoch(uint256 epoch, address to, uint256 value) external whenNotPaused returns (bool) {
        _checkTransfer(msg.sender, to);
        _transferAtEpoch(epoch, msg.sender, to, value);
        return true;
    }

    /**
     * @notice Moves `value` of `from`'s points of `epoch` to `to`, spending the caller's allowance.
     * Requirements: as {transferAtEpoch}; `from` non-zero; allowance of at least `value`.
     * Emits {Transfer} and {PointsTransferred}.
     */
    function transferFromAtEpoch(uint256 epoch, address from, address to, uint256 value)
        external
        whenNotPaused
        returns (bool)
    {
        _checkTransfer(from, to);
        _spendTokenAllowance(from, msg.sender, value);
        _transferAtEpoch(epoch, from, to, value);
        return true;
    }

    // =================================================================== views

    /// @notice The exact number of live points: the supply of the live epochs.
    function outstandingSupply() public view returns (uint256 supply) {
        uint256 current = currentEpoch();
        for (uint256 epoch = _firstLiveEpoch(current); epoch <= current; ++epoch) {
            supply += _epochSupply[epoch];
        }
    }

    /// @notice Points of `epoch` still held (expired but unswept ones included).
    function epochSupply(uint256 epoch) external view returns (uint256) {
        return _epochSupply[epoch];
    }

    /// @notice Points ever issued.
    function totalIssued() external view returns (uint256) {
        return _totals.issued;
    }

    /// @notice Points ever redeemed.
    function totalRedeemed() external view returns (uint256) {
        return _totals.redeemed;
    }

    /// @notice Points removed by expiry (swept): the coalition's breakage.
    function totalExpired() external view returns (uint256) {
        return _totalExpired;
    }

    /// @notice Points that have expired but are not swept yet. issued = redeemed + expired + pending + outstanding.
    function pendingExpiry() external view returns (uint256) {
        return _totals.issued - _totals.redeemed - _totalExpired - outstandingSupply();
    }

    /// @notice `account`'s live points per epoch, oldest first (epochs without points left out).
    function liveBalances(address account) external view returns (uint256[] memory epochs, uint256[] memory amounts) {
        uint256 current = currentEpoch();
        uint256 first = _firstLiveEpoch(current);
        epochs = new uint256[](current - first + 1);
        amounts = new uint256[](current - first + 1);
        uint256 n;
        for (uint256 epoch = first; epoch <= current; ++epoch) {
            uint256 held = _heldAt(account, epoch);
            if (held != 0) {
                epochs[n] = epoch;
                amounts[n] = held;
                ++n;
            }
        }
        // shrink the arrays to the n entries written
        assembly ("memory-safe") {
            mstore(epochs, n)
            mstore(amounts, n)
        }
    }

    /// @notice The timestamp epoch 0 starts at (the deployment block's).
    function genesisTimestamp() external view returns (uint256) {
        return _genesis;
    }

    /// @notice Seconds of ledger clock since genesis: `block.timestamp − genesis − pausedDuration()`.
    function ledgerClock() public view returns (uint256) {
        return block.timestamp - _genesis - pausedDuration();
    }

    /// @notice Seconds the ledger has spent paused, the current pause included.
    function pausedDuration() public view returns (uint256) {
        Clock memory clock = _clock;
        return clock.paused ? clock.pausedTotal + (block.timestamp - clock.pausedAt) : clock.pausedTotal;
    }

    /**
     * @notice The first timestamp at which points of `epoch` are expired, given the pauses so far and no
     * further pause (while paused: as if it ended now). Each later pause moves it by its length.
     */
    function epochExpiresAt(uint256 epoch) external view returns (uint256) {
        if (epoch > type(uint64).max) return type(uint256).max; // never, in practice: saturate, not overflow
        return _genesis + pausedDuration() + (epoch + _validity) * _epochLength;
    }

    /// @notice The hash-chain head over every ledger entry so far (bytes32(0) before the first).
    function ledgerHead() external view returns (bytes32) {
        return _head;
    }

    /// @notice The sequence number of the last ledger entry (0 before the first).
    function ledgerSequence() external view returns (uint64) {
        return _totals.seq;
    }

    /// @notice Partner `partnerId`'s registration and counters. Reverts for an unknown partner.
    function partner(uint32 partnerId) external view returns (PartnerView memory) {
        PartnerRecord storage record = _existingPartner(partnerId);
        OperatorAuth memory auth = _operators[record.operator];
        return PartnerView(
            partnerId,
            record.operator,
            record.settlement,
            auth.status,
            auth.canIssue,
            auth.canAccept,
            record.issuance.allowance,
            record.issuance.issued,
            record.redeemed,
            record.issuance.issuedValue,
            record.redeemedValue,
            record.settledPoints,
            record.settledValue
        );
    }

    /// @notice The partner operated by `operator` (also a rotated-away key's former partner), or 0.
    function partnerIdOf(address operator) external view returns (uint32) {
        return _operators[operator].partnerId;
    }

    /// @notice Every registered partner id, in registration order.
    function partnerIds() external view returns (uint32[] memory) {
        return _partnerIds;
    }

    /**
     * @notice Partner `partnerId`'s all-time settlement position: points redeemed at it minus points it
     * issued, and the same in value (each entry at the settlement value in force when it happened).
     * Positive: the coalition owes the partner; negative: the partner owes it.
     */
    function partnerPosition(uint32 partnerId) public view returns (int256 netPoints, int256 netValue) {
        PartnerRecord storage record = _existingPartner(partnerId);
        // counters are below 2^64 (points) and 2^128 (value): the casts and differences cannot overflow
        netPoints = int256(uint256(record.redeemed)) - int256(uint256(record.issuance.issued));
        netValue = int256(uint256(record.redeemedValue)) - int256(uint256(record.issuance.issuedValue));
    }

    /// @notice Partner `partnerId`'s open position: all-time position minus what was settled.
    function partnerOpenPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue) {
        (netPoints, netValue) = partnerPosition(partnerId);
        PartnerRecord storage record = _partners[partnerId];
        netPoints -= record.settledPoints;
        netValue -= record.settledValue;
    }

    /**
     * @notice The coalition pool's all-time position: points issued minus points redeemed (outstanding points
     * plus breakage), and the same in value. It and every partner's position sum to zero.
     */
    function coalitionPosition() public view returns (int256 netPoints, int256 netValue) {
        netPoints = int256(uint256(_totals.issued)) - int256(uint256(_totals.redeemed));
        uint256 count = _partnerIds.length;
        for (uint256 i; i < count; ++i) {
            PartnerRecord storage record = _partners[_partnerIds[i]];
            netValue += int256(uint256(record.issuance.issuedValue)) - int256(uint256(record.redeemedValue));
        }
    }

    /// @notice The coalition pool's open position: it and every partner's open position sum to zero.
    function coalitionOpenPosition() external view returns (int256 netPoints, int256 netValue) {
        (netPoints, netValue) = coalitionPosition();
        netPoints += _totalSettledPoints;
        netValue += _totalSettledValue;
    }

    /// @notice The settlement value of one point for entries from now on.
    function settlementValue() external view returns (uint256) {
        return _clock.settlementValue;
    }

    /// @notice Whether customers may transfer points to each other.
    function transfersEnabled() external view returns (bool) {
        return _clock.transfersEnabled;
    }

    /// @notice Whether the ledger is paused (its clock stands still).
    function paused() public view override returns (bool) {
        return _clock.paused;
    }

    /// @notice Whether partner `partnerId` has used `ref` for an issue or a batch.
    function referenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _referenceUsed[partnerId][ref];
    }

    /// @notice Whether partner `partnerId` has used `ref` for a redemption.
    function redemptionReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _redemptionReferenceUsed[partnerId][ref];
    }

    /// @notice Whether a settlement with partner `partnerId` was recorded under payment reference `ref`.
    function settlementReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _settlementReferenceUsed[partnerId][ref];
    }

    /// @notice The EIP-712 digest a customer signs to consent to a redemption.
    function redemptionDigest(
        address customer,
        uint32 partnerId,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(REDEMPTION_TYPEHASH, customer, partnerId, amount, ref, nonce, deadline))
        );
    }

    /// @notice The EIP-712 digest a customer signs to revoke the consent it signed with `nonce`.
    function cancellationDigest(address customer, uint256 nonce) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CANCELLATION_TYPEHASH, customer, nonce)));
    }

    /// @notice The EIP-712 domain separator of this chain and contract.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // =================================================================== roles and pauses as ledger entries

    /// @dev Every grant (the constructor's and an accepted admin handover's included) is refused for an
    /// operator key and recorded as a ledger entry.
    function _grantRole(bytes32 role, address account) internal override returns (bool granted) {
        uint32 operated = _operators[account].partnerId;
        if (operated != 0) revert LedgerOperatorCannotHoldRole(account, operated);
        granted = super._grantRole(role, account);
        if (granted) {
            ++_rolesHeld[account];
            _recordRole(role, account, true);
        }
    }

    /// @dev Every revocation (renouncing and an admin handover's included) is recorded as a ledger entry.
    function _revokeRole(bytes32 role, address account) internal override returns (bool revoked) {
        revoked = super._revokeRole(role, account);
        if (revoked) {
            // the account held the role, so its count is at least 1
            unchecked {
                --_rolesHeld[account];
            }
            _recordRole(role, account, false);
        }
    }

    /// @dev A handover that replaces a pending one records the implicit cancellation first.
    function _beginDefaultAdminTransfer(address newAdmin) internal override {
        uint32 operated = _operators[newAdmin].partnerId;
        if (operated != 0) revert LedgerOperatorCannotHoldRole(newAdmin, operated);
        _cancelDefaultAdminTransfer();
        super._beginDefaultAdminTransfer(newAdmin);
        (, uint48 schedule) = pendingDefaultAdmin();
        _recordHandover(_HANDOVER_SCHEDULED, newAdmin, 0, schedule);
    }

    /// @dev Records a cancellation only when a handover was pending (scheduled, not yet accepted).
    function _cancelDefaultAdminTransfer() internal override {
        (, uint48 schedule) = pendingDefaultAdmin();
        super._cancelDefaultAdminTransfer();
        if (schedule != 0) _recordHandover(_HANDOVER_CANCELLED, address(0), 0, 0);
    }

    /// @dev A delay change that replaces a pending one records the implicit cancellation first.
    function _changeDefaultAdminDelay(uint48 newDelay) internal override {
        _rollbackDefaultAdminDelay();
        super._changeDefaultAdminDelay(newDelay);
        (uint48 delay, uint48 schedule) = pendingDefaultAdminDelay();
        _recordHandover(_DELAY_SCHEDULED, address(0), delay, schedule);
    }

    /// @dev Records a cancellation only when a delay change was pending (OpenZeppelin reports one that took
    /// effect as not pending, and rolling back keeps it).
    function _rollbackDefaultAdminDelay() internal override {
        (, uint48 schedule) = pendingDefaultAdminDelay();
        super._rollbackDefaultAdminDelay();
        if (schedule != 0) _recordHandover(_DELAY_CANCELLED, address(0), 0, 0);
    }

    /// @dev Pausing stops the ledger's clock: it records when.
    function _pause() internal override whenNotPaused {
        Clock storage clock = _clock;
        clock.paused = true;
        clock.pausedAt = uint64(block.timestamp);
        emit Paused(msg.sender);
        _recordPause(true, clock.pausedTotal);
    }

    /// @dev Resuming adds the pause's length to the time spent paused, which every expiry is shifted by.
    function _unpause() internal override whenPaused {
        Clock storage clock = _clock;
        // timestamps fit in 64 bits for billions of years, and pausedAt <= block.timestamp
        unchecked {
            clock.pausedTotal += uint64(block.timestamp) - clock.pausedAt;
        }
        clock.paused = false;
        clock.pausedAt = 0;
        emit Unpaused(msg.sender);
        _recordPause(false, clock.pausedTotal);
    }

    // =================================================================== internals

    /**
     * @dev The one place balances change: moves `value` points of `epoch` from `from` to `to`; the zero
     * address on either side mints or burns and adjusts the epoch's supply. Emits {Transfer}.
     */
    function _update(address from, address to, uint256 epoch, uint256 value) private {
        uint256 slot = epoch % _validity;
        if (from == address(0)) {
            _epochSupply[epoch] += value;
        } else {
            Bucket storage source = _buckets[from][slot];
            // callers check held >= value against this same bucket
            unchecked {
                source.amount -= uint192(value);
            }
        }
        if (to == address(0)) {
            // value was held in epoch, so the epoch's supply covers it
            unchecked {
                _epochSupply[epoch] -= value;
            }
        } else {
            Bucket storage target = _buckets[to][slot];
            Bucket memory old = target;
            if (old.epoch != epoch) {
                // The slot holds an older, hence expired, epoch (see the contract's comment): retire it first.
                if (old.amount != 0) _expire(to, old.epoch, old.amount);
                target.epoch = uint64(epoch);
                target.amount = uint192(value);
            } else {
                target.amount = old.amount + uint192(value);
            }
        }
        emit Transfer(from, to, value);
    }

    function _issue(
        uint32 partnerId,
        address to,
        uint256 amount,
        bytes32 ref,
        uint16 reason,
        bytes32 ruleHash,
        uint256 epoch
    ) private {
        if (to == address(0)) revert ERC20InvalidReceiver(to);
        _update(address(0), to, epoch, amount);
        uint64 seq = _nextSeq();
        emit PointsIssued(partnerId, to, seq, epoch, amount, ref, reason, ruleHash);
        _record(keccak256(abi.encode(PointsIssued.selector, partnerId, to, seq, epoch, amount, ref, reason, ruleHash)));
    }

    function _redeem(uint32 partnerId, address customer, uint256 amount, bytes32 ref, uint256 nonce) private {
        uint256 balance = balanceOf(customer);
        if (balance < amount) revert LedgerInsufficientBalance(customer, balance, amount);
        _countRedeemed(partnerId, amount);

        uint256 current = currentEpoch();
        uint256 left = amount;
        for (uint256 epoch = _firstLiveEpoch(current); left > 0; ++epoch) {
            uint256 held = _heldAt(customer, epoch);
            if (held == 0) continue;
            uint256 take = held < left ? held : left;
            // take <= left: cannot underflow
            unchecked {
                left -= take;
            }
            _update(customer, address(0), epoch, take);
            uint64 seq = _nextSeq();
            emit PointsRedeemed(partnerId, customer, seq, epoch, take, ref, nonce);
            _record(
                keccak256(abi.encode(PointsRedeemed.selector, partnerId, customer, seq, epoch, take, ref, nonce))
            );
        }
    }

    /// @dev Counts `amount` points as redeemed at `partnerId`, at the settlement value in force.
    function _countRedeemed(uint32 partnerId, uint256 amount) private {
        PartnerRecord storage record = _partners[partnerId];
        uint256 room = MAX_ALLOWANCE - record.redeemed;
        if (amount > room) revert LedgerAmountTooLarge(amount, room);
        // amount <= room keeps the partner's count below 2^64 and its value below 2^128; the total
        // redeemed stays below the total issued < 2^96: none of these can overflow
        unchecked {
            record.redeemed += uint64(amount);
            record.redeemedValue += uint128(amount * _clock.settlementValue);
            _totals.redeemed += uint96(amount);
        }
    }

    /// @dev Expires what `account`'s bucket for live `epoch` still holds of an older (expired) epoch.
    function _retireStaleBucket(address account, uint256 epoch) private {
        Bucket memory old = _buckets[account][epoch % _validity];
        if (old.epoch != epoch && old.amount != 0) _expire(account, old.epoch, old.amount);
    }

    function _expire(address account, uint256 epoch, uint256 amount) private returns (uint256) {
        _update(account, address(0), epoch, amount);
        _totalExpired += amount;
        uint64 seq = _nextSeq();
        emit PointsExpired(account, seq, epoch, amount);
        _record(keccak256(abi.encode(PointsExpired.selector, account, seq, epoch, amount)));
        return amount;
    }

    function _transferOldestFirst(address from, address to, uint256 value) private {
        uint256 balance = balanceOf(from);
        if (balance < value) revert ERC20InsufficientBalance(from, balance, value);
        if (value == 0) emit Transfer(from, to, 0); // ERC-20: a zero-value transfer still emits Transfer
        uint256 left = value;
        for (uint256 epoch = _firstLiveEpoch(currentEpoch()); left > 0; ++epoch) {
            uint256 held = _heldAt(from, epoch);
            if (held == 0) continue;
            uint256 take = held < left ? held : left;
            // take <= left: cannot underflow
            unchecked {
                left -= take;
            }
            _moveEpoch(from, to, epoch, take);
        }
    }

    function _transferAtEpoch(uint256 epoch, address from, address to, uint256 value) private {
        uint256 current = currentEpoch();
        if (_isExpired(epoch, current)) revert ERC7818TransferredExpiredToken(from, epoch);
        if (epoch > current) revert LedgerFutureEpoch(epoch, current);
        uint256 held = _heldAt(from, epoch);
        if (held < value) revert ERC20InsufficientBalance(from, held, value);
        if (value == 0) emit Transfer(from, to, 0); // ERC-20: a zero-value transfer still emits Transfer
        else _moveEpoch(from, to, epoch, value);
    }

    function _moveEpoch(address from, address to, uint256 epoch, uint256 value) private {
        _update(from, to, epoch, value);
        uint64 seq = _nextSeq();
        emit PointsTransferred(from, to, seq, epoch, value);
        _record(keccak256(abi.encode(PointsTransferred.selector, from, to, seq, epoch, value)));
    }

    /// @dev Called first by every transfer entry point, before any allowance is spent. The zero address is
    /// refused on either side, as OpenZeppelin's ERC-20 does (no transfer may look like a mint or a burn).
    function _checkTransfer(address from, address to) private view {
        if (!_clock.transfersEnabled) revert LedgerTransfersDisabled();
        if (from == address(0)) revert ERC20InvalidSender(from);
        if (to == address(0)) revert ERC20InvalidReceiver(to);
    }

    function _spendTokenAllowance(address owner, address spender, uint256 value) private {
        uint256 current = _allowances[owner][spender];
        if (current == type(uint256).max) return;
        if (current < value) revert ERC20InsufficientAllowance(spender, current, value);
        // current >= value: cannot underflow
        unchecked {
            _allowances[owner][spender] = current - value;
        }
    }

    /// @dev Checks that `caller` operates an active partner with the right to issue, takes `amount` from its
    /// allowance, and counts it as issued at the settlement value in force. Returns the partner id.
    function _spendAllowance(address caller, uint256 amount) private returns (uint32 partnerId) {
        OperatorAuth memory auth = _operators[caller];
        partnerId = auth.partnerId;
        if (partnerId == 0) revert LedgerUnknownPartner(caller);
        _requireOperating(caller, partnerId, auth.status);
        if (!auth.canIssue) revert LedgerPartnerCannotIssue(partnerId);
        Issuance storage slot = _partners[partnerId].issuance;
        Issuance memory issuance = slot;
        if (amount > issuance.allowance) revert LedgerAllowanceExceeded(partnerId, issuance.allowance, amount);
        uint256 room = MAX_ALLOWANCE - issuance.issued;
        if (amount > room) revert LedgerAmountTooLarge(amount, room);
        Totals storage totals = _totals;
        uint256 totalRoom = type(uint96).max - totals.issued;
        if (amount > totalRoom) revert LedgerAmountTooLarge(amount, totalRoom);
        // amount <= allowance, amount <= room and amount <= totalRoom: no count over- or underflows, and the
        // value stays below 2^64 * 2^64 = 2^128
        unchecked {
            slot.allowance = issuance.allowance - uint64(amount);
            slot.issued = issuance.issued + uint64(amount);
            slot.issuedValue = issuance.issuedValue + uint128(amount * _clock.settlementValue);
            totals.issued += uint96(amount);
        }
    }

    function _acceptor(address caller) private view returns (uint32 partnerId) {
        OperatorAuth memory auth = _operators[caller];
        partnerId = auth.partnerId;
        if (partnerId == 0) revert LedgerUnknownPartner(caller);
        _requireOperating(caller, partnerId, auth.status);
        if (!auth.canAccept) revert LedgerPartnerCannotAccept(partnerId);
    }

    function _requireOperating(address caller, uint32 partnerId, PartnerStatus status) private pure {
        if (status == PartnerStatus.None) revert LedgerRotatedOperator(caller, partnerId);
        _requireActive(partnerId, status);
    }

    function _requireActive(uint32 partnerId, PartnerStatus status) private pure {
        if (status == PartnerStatus.Suspended) revert LedgerPartnerSuspended(partnerId);
        if (status == PartnerStatus.Offboarded) revert LedgerPartnerOffboarded(partnerId);
    }

    function _existingPartner(uint32 partnerId) private view returns (PartnerRecord storage record) {
        record = _partners[partnerId];
        if (record.operator == address(0)) revert LedgerPartnerNotFound(partnerId);
    }

    /// @dev The operator record of partner `partnerId`, which must exist and not be offboarded.
    function _liveAuth(uint32 partnerId) private view returns (OperatorAuth storage auth) {
        auth = _operators[_existingPartner(partnerId).operator];
        if (auth.status == PartnerStatus.Offboarded) revert LedgerPartnerOffboarded(partnerId);
    }

    /// @dev A key that may become a partner's operator: non-zero, never an operator, holding no role, and not
    /// the pending admin of a handover.
    function _checkNewOperator(address operator) private view {
        (address pendingAdmin,) = pendingDefaultAdmin();
        if (
            operator == address(0) || _operators[operator].partnerId != 0 || _rolesHeld[operator] != 0
                || operator == pendingAdmin
        ) {
            revert LedgerInvalidOperator(operator);
        }
    }

    function _checkEitherRole(bytes32 role, bytes32 otherRole) private view {
        if (!hasRole(role, msg.sender) && !hasRole(otherRole, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, role);
        }
    }

    function _checkAmount(uint256 amount) private pure {
        if (amount == 0) revert LedgerZeroAmount();
        if (amount > MAX_AMOUNT) revert LedgerAmountTooLarge(amount, MAX_AMOUNT);
    }

    function _checkSettlementValue(uint256 value) private pure {
        if (value > MAX_SETTLEMENT_VALUE) revert LedgerInvalidSettlementValue(value, MAX_SETTLEMENT_VALUE);
    }

    function _checkMagnitude(int256 amount, uint256 max) private pure {
        // -(amount + 1) cannot overflow, even for type(int256).min, whose magnitude is 2^255
        uint256 magnitude = amount < 0 ? uint256(-(amount + 1)) + 1 : uint256(amount);
        if (magnitude > max) revert LedgerAmountTooLarge(magnitude, max);
    }

    function _useReference(
        mapping(uint32 => mapping(bytes32 => bool)) storage used,
        uint32 partnerId,
        bytes32 ref
    ) private {
        if (used[partnerId][ref]) revert LedgerReferenceUsed(partnerId, ref);
        used[partnerId][ref] = true;
    }

    /**
     * @dev Accepts `customer`'s signature over `digest`: ECDSA first (accounts without code and
     * EIP-7702-delegated accounts, whose key still signs for them); only when that does not recover the
     * customer and the account has code, ERC-1271 with at most ERC1271_GAS_LIMIT gas.
     */
    function _checkConsent(address customer, bytes32 digest, bytes calldata signature) private view {
        (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signature);
        if (error == ECDSA.RecoverError.NoError && signer == customer) return;
        if (customer.code.length != 0) {
            bytes memory query = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
            bool ok;
            uint256 size;
            bytes32 answer;
            // OpenZeppelin SignatureChecker's call, with a gas stipend, and copying only the first word of
            // the answer (into scratch space), so a wallet can make the ledger pay for neither
            assembly ("memory-safe") {
                ok := staticcall(ERC1271_GAS_LIMIT, customer, add(query, 0x20), mload(query), 0x00, 0x20)
                size := returndatasize()
                answer := mload(0x00)
            }
            if (ok && size >= 32 && bytes4(answer) == IERC1271.isValidSignature.selector) return;
            revert LedgerInvalidSigner(customer, address(0));
        }
        if (error != ECDSA.RecoverError.NoError) ECDSA.recover(digest, signature); // reverts with ECDSA's error
        revert LedgerInvalidSigner(customer, signer);
    }

    function _revokeConsent(address customer, uint256 nonce) private {
        _useCheckedNonce(customer, nonce);
        uint64 seq = _nextSeq();
        emit ConsentRevoked(customer, seq, nonce);
        _record(keccak256(abi.encode(ConsentRevoked.selector, customer, seq, nonce)));
    }

    function _recordAllowance(uint32 partnerId, Issuance storage issuance, uint256 previous, uint256 allowance_)
        private
    {
        // allowance_ <= MAX_ALLOWANCE, checked by the callers
        issuance.allowance = uint64(allowance_);
        uint64 seq = _nextSeq();
        emit PartnerAllowanceChanged(partnerId, seq, previous, allowance_);
        _record(keccak256(abi.encode(PartnerAllowanceChanged.selector, partnerId, seq, previous, allowance_)));
    }

    function _setStatus(uint32 partnerId, OperatorAuth storage auth, PartnerStatus status) private {
        auth.status = status;
        uint64 seq = _nextSeq();
        emit PartnerStatusChanged(partnerId, seq, uint8(status));
        _record(keccak256(abi.encode(PartnerStatusChanged.selector, partnerId, seq, uint8(status))));
    }

    function _recordRole(bytes32 role, address account, bool granted) private {
        uint64 seq = _nextSeq();
        emit RoleChanged(role, account, seq, granted, msg.sender);
        _record(keccak256(abi.encode(RoleChanged.selector, role, account, seq, granted, msg.sender)));
    }

    function _recordHandover(uint8 kind, address newAdmin, uint48 delay, uint48 schedule) private {
        uint64 seq = _nextSeq();
        emit AdminHandoverChanged(seq, kind, newAdmin, delay, schedule);
        _record(keccak256(abi.encode(AdminHandoverChanged.selector, seq, kind, newAdmin, delay, schedule)));
    }

    function _recordPause(bool paused_, uint256 pausedTotal) private {
        uint64 seq = _nextSeq();
        emit PauseChanged(seq, paused_, pausedTotal);
        _record(keccak256(abi.encode(PauseChanged.selector, seq, paused_, pausedTotal)));
    }

    function _nextSeq() private returns (uint64 seq) {
        seq = _totals.seq + 1;
        _totals.seq = seq;
    }

    function _record(bytes32 entryHash) private {
        _head = keccak256(abi.encodePacked(_head, entryHash));
    }

    function _heldAt(address account, uint256 epoch) private view returns (uint256) {
        Bucket memory bucket = _buckets[account][epoch % _validity];
        return bucket.epoch == epoch ? bucket.amount : 0;
    }

    function _firstLiveEpoch(uint256 current) private view returns (uint256) {
        return current + 1 > _validity ? current + 1 - _validity : 0;
    }

    function _isExpired(uint256 epoch, uint256 current) private view returns (bool) {
        return epoch < current && current - epoch >= _validity; // epoch + validity <= current, without overflow
    }
}
