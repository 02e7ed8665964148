// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {ILoyaltyLedger} from "./interfaces/ILoyaltyLedger.sol";

/**
 * @title LoyaltyLedger
 * @notice One coalition point currency: ERC-20 readable, expiring by ERC-7818 time-based epochs, issued by
 * partner brands within their allowance, redeemed at accepting partners with the customer's EIP-712 consent,
 * with per-partner settlement counters and a numbered, hash-chained ledger of every entry.
 *
 * Storage of balances: each account has `validityDuration` buckets; points of epoch `e` live in bucket
 * `e % validityDuration`, tagged with `e`. The live epochs are always `validityDuration` consecutive numbers, so
 * they never share a bucket; a bucket still holding an expired epoch when a live epoch needs it is expired
 * (with its event) before it is reused. Every balance change goes through {_update}, which emits `Transfer`.
 */
contract LoyaltyLedger is ILoyaltyLedger, IERC20Metadata, IERC20Errors, AccessControl, Pausable, Nonces, EIP712 {
    /// @notice May pause the ledger in an incident. Unpausing needs the admin role.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// @notice The EIP-712 type a customer signs to consent to a redemption.
    bytes32 public constant REDEMPTION_TYPEHASH = keccak256(
        "Redemption(address customer,uint32 partnerId,uint256 amount,bytes32 reference,uint256 nonce,uint256 deadline)"
    );

    /// @notice The largest amount of points one issue, batch item or redemption may carry.
    uint256 public constant MAX_AMOUNT = type(uint64).max;

    struct Bucket {
        uint64 epoch;
        uint192 amount;
    }

    /// @dev What an operator address may do, packed in one slot so an issue reads it with one SLOAD.
    struct OperatorAuth {
        uint32 partnerId;
        bool active;
        bool canIssue;
        bool canAccept;
    }

    struct PartnerRecord {
        address operator;
        address settlement;
        uint128 allowance;
        uint128 issued;
        uint256 redeemed;
    }

    /// @dev Sequence number and running totals, packed in one slot.
    struct Totals {
        uint64 seq;
        uint96 issued;
        uint96 redeemed;
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
    mapping(uint32 partnerId => PartnerRecord) private _partners;
    uint32[] private _partnerIds;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) private _referenceUsed;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) private _redemptionReferenceUsed;

    Totals private _totals;
    uint256 private _totalExpired;
    bytes32 private _head;
    uint256 private _settlementValue;
    bool private _transfersEnabled;

    /**
     * @param admin receives the admin and pauser roles.
     * @param epochLength_ seconds per epoch (e.g. 30 days).
     * @param validity_ epochs points stay valid, counting the epoch they are credited in (e.g. 12).
     * @param settlementValue_ the settlement value of one point, in the coalition's settlement unit.
     *
     * Requirements: `epochLength_` > 0, 0 < `validity_` <= 1024, `admin` non-zero.
     */
    constructor(
        string memory name_,
        string memory symbol_,
        address admin,
        uint256 epochLength_,
        uint256 validity_,
        uint256 settlementValue_
    ) EIP712("LoyaltyLedger", "1") {
        if (epochLength_ == 0 || validity_ == 0 || validity_ > 1024) {
            revert LedgerInvalidConfiguration(epochLength_, validity_);
        }
        if (admin == address(0)) revert AccessControlUnauthorizedAccount(admin, DEFAULT_ADMIN_ROLE);
        _name = name_;
        _symbol = symbol_;
        _genesis = block.timestamp;
        _epochLength = epochLength_;
        _validity = validity_;
        _settlementValue = settlementValue_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
    }

    // =================================================================== administration

    /**
     * @notice Registers partner `partnerId`, operated by `operator`, paid out to `settlement`.
     * Requirements: admin role; `partnerId` non-zero and unused; `operator` non-zero, operating no partner and
     * not an admin;
     * `settlement` non-zero; `allowance` at most 2^128 - 1.
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
        // admin and partner keys are separate: an operator key must not also administer the ledger
        if (operator == address(0) || _operators[operator].partnerId != 0 || hasRole(DEFAULT_ADMIN_ROLE, operator)) {
            revert LedgerInvalidOperator(operator);
        }
        if (settlement == address(0)) revert LedgerInvalidSettlementAddress(settlement);
        if (issuanceAllowance > type(uint128).max) {
            revert LedgerAmountTooLarge(issuanceAllowance, type(uint128).max);
        }
        _operators[operator] = OperatorAuth(partnerId, true, canIssue, canAccept);
        _partners[partnerId] = PartnerRecord(operator, settlement, uint128(issuanceAllowance), 0, 0);
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
     * @notice Sets partner `partnerId`'s remaining issuance allowance to `newAllowance`.
     * Requirements: admin role; the partner exists; `newAllowance` at most 2^128 - 1.
     * Emits {PartnerAllowanceChanged}.
     */
    function setPartnerAllowance(uint32 partnerId, uint256 newAllowance) external onlyRole(DEFAULT_ADMIN_ROLE) {
        PartnerRecord storage record = _existingPartner(partnerId);
        if (newAllowance > type(uint128).max) revert LedgerAmountTooLarge(newAllowance, type(uint128).max);
        uint256 previous = record.allowance;
        record.allowance = uint128(newAllowance);
        uint64 seq = _nextSeq();
        emit PartnerAllowanceChanged(partnerId, seq, previous, newAllowance);
        _record(keccak256(abi.encode(PartnerAllowanceChanged.selector, partnerId, seq, previous, newAllowance)));
    }

    /**
     * @notice Suspends partner `partnerId`: it can neither issue nor redeem until reactivated.
     * Requirements: admin role; the partner exists and is active.
     * Emits {PartnerStatusChanged}.
     */
    function suspendPartner(uint32 partnerId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        OperatorAuth storage auth = _operators[_existingPartner(partnerId).operator];
        if (!auth.active) revert LedgerPartnerSuspended(partnerId);
        auth.active = false;
        _recordStatus(partnerId, false);
    }

    /**
     * @notice Reactivates suspended partner `partnerId`.
     * Requirements: admin role; the partner exists and is suspended.
     * Emits {PartnerStatusChanged}.
     */
    function reactivatePartner(uint32 partnerId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        OperatorAuth storage auth = _operators[_existingPartner(partnerId).operator];
        if (auth.active) revert LedgerPartnerNotSuspended(partnerId);
        auth.active = true;
        _recordStatus(partnerId, true);
    }

    /**
     * @notice Sets the settlement value of one point.
     * Requirements: admin role.
     * Emits {SettlementValueChanged}.
     */
    function setSettlementValue(uint256 value) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 previous = _settlementValue;
        _settlementValue = value;
        uint64 seq = _nextSeq();
        emit SettlementValueChanged(seq, previous, value);
        _record(keccak256(abi.encode(SettlementValueChanged.selector, seq, previous, value)));
    }

    /**
     * @notice Switches transfers between customers on or off (off at deployment).
     * Requirements: admin role.
     * Emits {TransfersEnabledChanged}.
     */
    function setTransfersEnabled(bool enabled) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transfersEnabled = enabled;
        uint64 seq = _nextSeq();
        emit TransfersEnabledChanged(seq, enabled);
        _record(keccak256(abi.encode(TransfersEnabledChanged.selector, seq, enabled)));
    }

    /**
     * @notice Stops every change of balances, allowances and references. Administration goes on.
     * Requirements: pauser role; not paused.
     * Emits {Paused}.
     */
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /**
     * @notice Ends a pause.
     * Requirements: admin role; paused.
     * Emits {Unpaused}.
     */
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
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
        uint32 partnerId = _issuer(msg.sender);
        _checkAmount(amount);
        _useReference(_referenceUsed, partnerId, ref);
        _spendAllowance(partnerId, amount);
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
        uint32 partnerId = _issuer(msg.sender);
        uint256 count = recipients.length;
        if (count != amounts.length) revert LedgerBatchLengthMismatch(count, amounts.length);
        if (count == 0) revert LedgerEmptyBatch();
        uint256 total;
        for (uint256 i; i < count; ++i) {
            _checkAmount(amounts[i]);
            total += amounts[i];
        }
        _useReference(_referenceUsed, partnerId, batchReference);
        _spendAllowance(partnerId, total);
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
     * the customer's EIP-712 `Redemption` signature (an ERC-1271 signature for contract wallets).
     * Requirements: not paused; the caller operates an active partner with the right to accept;
     * 0 < `amount` <= MAX_AMOUNT; `block.timestamp` <= `deadline`; `signature` by `customer` over this
     * chain, this contract and these values; `nonce` is the customer's next nonce; `ref` not yet used by the
     * partner for a redemption; `customer` holds `amount` live points.
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

    // =================================================================== anyone

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
     * Requirements: not paused; `spender` non-zero.
     * Emits {Approval}.
     */
    function approve(address spender, uint256 value) external whenNotPaused returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(spender);
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
        _checkTransfer(to);
        _transferOldestFirst(msg.sender, to, value);
        return true;
    }

    /**
     * @notice Moves `value` live points from `from` to `to`, spending the caller's allowance.
     * Requirements: as {transfer}; allowance of at least `value` (unlimited when type(uint256).max).
     * Emits {Transfer} and {PointsTransferred} per epoch moved.
     */
    function transferFrom(address from, address to, uint256 value) external whenNotPaused returns (bool) {
        _checkTransfer(to);
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

    /// @notice The epoch `block.timestamp` falls in, counted from deployment.
    function currentEpoch() public view returns (uint256) {
        return (block.timestamp - _genesis) / _epochLength;
    }

    /// @notice Seconds per epoch.
    function epochLength() external view returns (uint256) {
        return _epochLength;
    }

    /// @notice Epochs are measured in seconds of `block.timestamp`.
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
        _checkTransfer(to);
        _transferAtEpoch(epoch, msg.sender, to, value);
        return true;
    }

    /**
     * @notice Moves `value` of `from`'s points of `epoch` to `to`, spending the caller's allowance.
     * Requirements: as {transferAtEpoch}; allowance of at least `value`.
     * Emits {Transfer} and {PointsTransferred}.
     */
    function transferFromAtEpoch(uint256 epoch, address from, address to, uint256 value)
        external
        whenNotPaused
        returns (bool)
    {
        _checkTransfer(to);
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

    /// @notice The first timestamp at which points of `epoch` are expired.
    function epochExpiresAt(uint256 epoch) external view returns (uint256) {
        return _genesis + (epoch + _validity) * _epochLength;
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
            auth.active,
            auth.canIssue,
            auth.canAccept,
            record.allowance,
            record.issued,
            record.redeemed
        );
    }

    /// @notice The partner operated by `operator`, or 0.
    function partnerIdOf(address operator) external view returns (uint32) {
        return _operators[operator].partnerId;
    }

    /// @notice Every registered partner id, in registration order.
    function partnerIds() external view returns (uint32[] memory) {
        return _partnerIds;
    }

    /**
     * @notice Partner `partnerId`'s settlement position: points redeemed at it minus points it issued, and that
     * times the settlement value. Positive: the coalition owes the partner; negative: the partner owes it.
     */
    function partnerPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue) {
        PartnerRecord storage record = _existingPartner(partnerId);
        netPoints = int256(record.redeemed) - int256(uint256(record.issued));
        netValue = netPoints * int256(_settlementValue);
    }

    /**
     * @notice The coalition pool's position: points issued minus points redeemed, i.e. outstanding points plus
     * breakage (expired and pending expiry). It and every partner's position sum to zero.
     */
    function coalitionPosition() external view returns (int256 netPoints, int256 netValue) {
        netPoints = int256(uint256(_totals.issued)) - int256(uint256(_totals.redeemed));
        netValue = netPoints * int256(_settlementValue);
    }

    /// @notice The settlement value of one point.
    function settlementValue() external view returns (uint256) {
        return _settlementValue;
    }

    /// @notice Whether customers may transfer points to each other.
    function transfersEnabled() external view returns (bool) {
        return _transfersEnabled;
    }

    /// @notice Whether partner `partnerId` has used `ref` for an issue or a batch.
    function referenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _referenceUsed[partnerId][ref];
    }

    /// @notice Whether partner `partnerId` has used `ref` for a redemption.
    function redemptionReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _redemptionReferenceUsed[partnerId][ref];
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

    /// @notice The EIP-712 domain separator of this chain and contract.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
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
        _partners[partnerId].redeemed += amount;
        // amount <= balance <= issued - redeemed, and issued fits in uint96: cannot overflow
        unchecked {
            _totals.redeemed += uint96(amount);
        }

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

    /// @dev Called first by every transfer entry point, before any allowance is spent.
    function _checkTransfer(address to) private view {
        if (!_transfersEnabled) revert LedgerTransfersDisabled();
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

    function _issuer(address caller) private view returns (uint32) {
        OperatorAuth memory auth = _operators[caller];
        if (auth.partnerId == 0) revert LedgerUnknownPartner(caller);
        if (!auth.active) revert LedgerPartnerSuspended(auth.partnerId);
        if (!auth.canIssue) revert LedgerPartnerCannotIssue(auth.partnerId);
        return auth.partnerId;
    }

    function _acceptor(address caller) private view returns (uint32) {
        OperatorAuth memory auth = _operators[caller];
        if (auth.partnerId == 0) revert LedgerUnknownPartner(caller);
        if (!auth.active) revert LedgerPartnerSuspended(auth.partnerId);
        if (!auth.canAccept) revert LedgerPartnerCannotAccept(auth.partnerId);
        return auth.partnerId;
    }

    function _existingPartner(uint32 partnerId) private view returns (PartnerRecord storage record) {
        record = _partners[partnerId];
        if (record.operator == address(0)) revert LedgerPartnerNotFound(partnerId);
    }

    function _checkAmount(uint256 amount) private pure {
        if (amount == 0) revert LedgerZeroAmount();
        if (amount > MAX_AMOUNT) revert LedgerAmountTooLarge(amount, MAX_AMOUNT);
    }

    function _useReference(
        mapping(uint32 => mapping(bytes32 => bool)) storage used,
        uint32 partnerId,
        bytes32 ref
    ) private {
        if (used[partnerId][ref]) revert LedgerReferenceUsed(partnerId, ref);
        used[partnerId][ref] = true;
    }

    function _spendAllowance(uint32 partnerId, uint256 amount) private {
        PartnerRecord storage record = _partners[partnerId];
        uint256 remaining = record.allowance;
        if (amount > remaining) revert LedgerAllowanceExceeded(partnerId, remaining, amount);
        // amount <= remaining: cannot underflow
        unchecked {
            record.allowance = uint128(remaining - amount);
        }
        Totals storage totals = _totals;
        uint256 room = type(uint96).max - totals.issued;
        if (amount > room) revert LedgerAmountTooLarge(amount, room);
        // amount <= room: the uint96 sum cannot overflow, and record.issued <= totals.issued
        unchecked {
            totals.issued += uint96(amount);
            record.issued += uint128(amount);
        }
    }

    function _checkConsent(address customer, bytes32 digest, bytes calldata signature) private view {
        if (customer.code.length == 0) {
            address signer = ECDSA.recover(digest, signature);
            if (signer != customer) revert LedgerInvalidSigner(customer, signer);
        } else if (!SignatureChecker.isValidERC1271SignatureNow(customer, digest, signature)) {
            revert LedgerInvalidSigner(customer, address(0));
        }
    }

    function _recordStatus(uint32 partnerId, bool active) private {
        uint64 seq = _nextSeq();
        emit PartnerStatusChanged(partnerId, seq, active);
        _record(keccak256(abi.encode(PartnerStatusChanged.selector, partnerId, seq, active)));
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
