// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

import {ILoyaltyLedgerCore} from "./interfaces/ILoyaltyLedger.sol";
import {LedgerBase} from "./LedgerBase.sol";
import {LoyaltyLedgerExtension} from "./LoyaltyLedgerExtension.sol";

/**
 * @title LoyaltyLedger
 * @notice One coalition point currency: ERC-20 readable, expiring by ERC-7818 time-based epochs on a clock that
 * pauses stop, issued by partner brands within their allowance (each issuance and each batch item under the
 * partner's order reference; a batch under the Merkle root of its items), redeemed at accepting partners with the
 * customer's EIP-712 consent, reversible by the issuing partner within a window (returns), refundable by the
 * accepting partner (into the epochs spent), with per-partner settlement counters valued when each entry happens,
 * closed settlement periods, separated roles, and a numbered, hash-chained ledger of every entry.
 *
 * This contract runs the hot paths (issue, batch, redeem), ERC-20, ERC-7818, sweeping, pausing and the role
 * hooks. Every other function is {LoyaltyLedgerExtension}'s, deployed by this constructor and delegate-called by
 * the fallback in this contract's storage (as Compound III's Comet does with CometExt): one ledger, one address,
 * one storage, one hash chain, two code bodies because one would exceed EIP-170's 24,576 bytes. The full external
 * surface is {ILoyaltyLedger}.
 *
 * Powers: the default admin (two-step handover with a delay; a TimelockController in production) grants
 * roles and keeps the partner registry; the treasury sets the settlement value and records settlements; the
 * pauser pauses, resumes and suspends partners. No partner operator holds a role, and no role holder operates
 * a partner. Every role change and pause is a ledger entry.
 */
contract LoyaltyLedger is ILoyaltyLedgerCore, IERC20Metadata, LedgerBase {
    uint8 private constant _HANDOVER_SCHEDULED = 1;
    uint8 private constant _HANDOVER_CANCELLED = 2;
    uint8 private constant _DELAY_SCHEDULED = 3;
    uint8 private constant _DELAY_CANCELLED = 4;

    address private immutable _extension;

    /**
     * @param admin the default admin (a TimelockController in production): role grants and the registry.
     * @param treasury receives the treasury role (settlement value and settlement records).
     * @param pauser receives the pauser role.
     * @param adminDelay seconds between scheduling an admin handover and its acceptance.
     * @param epochLength_ seconds of ledger clock per epoch (e.g. 30 days).
     * @param validity_ epochs points stay valid, counting the epoch they are credited in (e.g. 12).
     * @param settlementValue_ the settlement value of one point, in the coalition's settlement unit.
     * @param reversalWindow_ seconds after an issuance during which its partner may reverse it (e.g. 90 days).
     *
     * Requirements: `epochLength_` > 0, 0 < `validity_` <= MAX_VALIDITY, `admin` non-zero,
     * `settlementValue_` <= MAX_SETTLEMENT_VALUE, `reversalWindow_` < 2^64. A zero `treasury` or `pauser` leaves
     * that role unheld.
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
        uint256 settlementValue_,
        uint256 reversalWindow_
    ) LedgerBase(admin, adminDelay, block.timestamp, epochLength_, validity_, reversalWindow_) {
        if (epochLength_ == 0 || validity_ == 0 || validity_ > MAX_VALIDITY) {
            revert LedgerInvalidConfiguration(epochLength_, validity_);
        }
        _checkSettlementValue(settlementValue_);
        if (reversalWindow_ > type(uint64).max) {
            revert LedgerInvalidReversalWindow(reversalWindow_, type(uint64).max);
        }
        _extension = address(
            new LoyaltyLedgerExtension(block.timestamp, epochLength_, validity_, reversalWindow_)
        );
        _name = name_;
        _symbol = symbol_;
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

    /**
     * @notice Runs every function of {ILoyaltyLedgerExtension} (the registry, settlement, consents, returns,
     * refunds, migration, most views) in this contract's storage, by delegatecall to the extension.
     */
    fallback() external {
        address target = _extension;
        // not memory-safe (it copies the calldata over scratch space and beyond), and it returns or reverts
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    /// @notice The code that runs this ledger's {ILoyaltyLedgerExtension} functions (in this ledger's storage).
    function extension() external view returns (address) {
        return _extension;
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
     * @param ref the partner's reference (e.g. the keyed hash of its order id), usable once per partner; the
     * issuance can be reversed under it (see {reverseIssuance}) within the reversal window.
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
        (uint32 partnerId, uint256 value) = _spendAllowance(msg.sender, amount);
        uint256 epoch = _currentEpoch();
        // a single issue is a tree of one item, whose root is the item's leaf
        _commitIssuance(partnerId, ref, _leaf(to, amount, ref), epoch, value);
        if (to == address(0)) revert ERC20InvalidReceiver(to);
        _update(address(0), to, epoch, amount);
        uint64 seq = _nextSeq();
        emit PointsIssued(partnerId, to, seq, epoch, amount, ref, reason, ruleHash, value);
        _record(
            keccak256(
                abi.encode(PointsIssued.selector, partnerId, to, seq, epoch, amount, ref, reason, ruleHash, value)
            )
        );
    }

    /**
     * @notice Issues `amounts[i]` points of the current epoch to each `recipients[i]` for the partner's order
     * `itemRefs[i]`. The batch's reference is the Merkle root of its items (OpenZeppelin StandardMerkleTree over
     * (address, uint256, bytes32), leaves in item order, unsorted), which the contract computes: the same items
     * cannot be issued twice, and each item can later be reversed with its proof (see {reverseIssuance}).
     * Requirements: as {issue} for every item; equal, non-zero lengths; the sum within the allowance; the root
     * unused by the partner.
     * Emits {PointsBatchIssued}, then {Transfer} and {PointsIssuedInBatch} per recipient (after any
     * {PointsExpired} for a recipient's bucket that still held expired points).
     * @return root the batch's Merkle root (its reference).
     */
    function issueBatch(
        address[] calldata recipients,
        uint256[] calldata amounts,
        bytes32[] calldata itemRefs,
        uint16 reason,
        bytes32 ruleHash
    ) external whenNotPaused returns (bytes32 root) {
        uint256 count = recipients.length;
        if (count != amounts.length || count != itemRefs.length) {
            revert LedgerBatchLengthMismatch(count, amounts.length, itemRefs.length);
        }
        if (count == 0) revert LedgerEmptyBatch();
        // StandardMerkleTree's array layout: node i has children 2i+1 and 2i+2; leaf j sits at 2count-2-j
        bytes32[] memory tree = new bytes32[](2 * count - 1);
        uint256 total;
        for (uint256 i; i < count; ++i) {
            uint256 amount = amounts[i];
            _checkAmount(amount);
            total += amount;
            tree[2 * count - 2 - i] = _leaf(recipients[i], amount, itemRefs[i]);
        }
        for (uint256 i = count - 1; i > 0;) {
            // i >= 1 here: cannot underflow
            unchecked {
                --i;
            }
            tree[i] = Hashes.commutativeKeccak256(tree[2 * i + 1], tree[2 * i + 2]);
        }
        root = tree[0];
        (uint32 partnerId, uint256 value) = _spendAllowance(msg.sender, total);
        uint256 epoch = _currentEpoch();
        _commitIssuance(partnerId, root, root, epoch, value);
        // Retire expired points in the recipients' target buckets first, so that no expiry entry falls
        // between the batch's items and they are numbered seq + 1 … seq + count.
        for (uint256 i; i < count; ++i) {
            _retireStaleBucket(recipients[i], epoch);
        }
        uint64 seq = _nextSeq();
        emit PointsBatchIssued(partnerId, seq, epoch, root, reason, ruleHash, count, total, value);
        _record(
            keccak256(
                abi.encode(
                    PointsBatchIssued.selector, partnerId, seq, epoch, root, reason, ruleHash, count, total, value
                )
            )
        );
        for (uint256 i; i < count; ++i) {
            address to = recipients[i];
            uint256 amount = amounts[i];
            bytes32 itemRef = itemRefs[i];
            if (to == address(0)) revert ERC20InvalidReceiver(to);
            _update(address(0), to, epoch, amount);
            seq = _nextSeq();
            emit PointsIssuedInBatch(to, seq, amount, itemRef);
            _record(keccak256(abi.encode(PointsIssuedInBatch.selector, to, seq, amount, itemRef)));
        }
    }

    /**
     * @notice Redeems `amount` of `customer`'s live points at the calling partner, oldest epochs first, with
     * the customer's EIP-712 `Redemption` signature (ECDSA for accounts without code and EIP-7702-delegated
     * ones; ERC-1271 for contract wallets when ECDSA does not recover the customer). The redemption can be
     * refunded under `ref` (see {refundRedemption}).
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
        _checkConsent(customer, _redemptionDigest(customer, partnerId, amount, ref, nonce, deadline), signature);
        _useCheckedNonce(customer, nonce);
        if (_redemptions[partnerId][ref] != 0) revert LedgerReferenceUsed(partnerId, ref);

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
        uint256 current = _currentEpoch();
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
    function balanceOf(address account) external view returns (uint256) {
        return _balanceOf(account);
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
        if (_isExpired(epoch, _currentEpoch())) return 0;
        return _heldAt(account, epoch);
    }

    /// @notice The epoch the ledger's clock is in (the clock stands still while paused; see {ledgerClock}).
    function currentEpoch() external view returns (uint256) {
        return _currentEpoch();
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
        return _isExpired(epoch, _currentEpoch());
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
    function outstandingSupply() public view returns (uint256) {
        return _outstandingSupply();
    }

    /// @notice Points ever issued (reversed ones included: see {totalReversed}).
    function totalIssued() external view returns (uint256) {
        return _totals.issued;
    }

    /// @notice Points ever redeemed (refunded ones included: see {totalRefunded}).
    function totalRedeemed() external view returns (uint256) {
        return _totals.redeemed;
    }

    /// @notice Points removed by expiry (swept, or expired on a refund into an expired epoch): the coalition's
    /// breakage.
    function totalExpired() external view returns (uint256) {
        return _totalExpired;
    }

    /// @notice Seconds of ledger clock since genesis: `block.timestamp − genesis − pausedDuration()`.
    function ledgerClock() external view returns (uint256) {
        return _ledgerClock();
    }

    /// @notice Seconds the ledger has spent paused, the current pause included.
    function pausedDuration() external view returns (uint256) {
        return _pausedDuration();
    }

    /// @notice The hash-chain head over every ledger entry so far (bytes32(0) before the first).
    function ledgerHead() external view returns (bytes32) {
        return _head;
    }

    /// @notice The sequence number of the last ledger entry (0 before the first).
    function ledgerSequence() external view returns (uint64) {
        return _totals.seq;
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
        _pauses.push(PauseRecord(uint64(block.timestamp), clock.pausedTotal));
        emit Unpaused(msg.sender);
        _recordPause(false, clock.pausedTotal);
    }

    // =================================================================== internals

    /// @dev Remembers partner `partnerId`'s issuance under `ref` (its commitment); a used `ref` is refused.
    function _commitIssuance(uint32 partnerId, bytes32 ref, bytes32 root, uint256 epoch, uint256 value) private {
        mapping(bytes32 => bytes32) storage issuances = _issuances[partnerId];
        if (issuances[ref] != 0) revert LedgerReferenceUsed(partnerId, ref);
        issuances[ref] = _issuanceCommitment(root, epoch, block.timestamp, value);
    }

    /// @dev Takes `amount` of `customer`'s live points, oldest first, and remembers the redemption's parts
    /// under `ref` for a later refund.
    function _redeem(uint32 partnerId, address customer, uint256 amount, bytes32 ref, uint256 nonce) private {
        uint256 balance = _balanceOf(customer);
        if (balance < amount) revert LedgerInsufficientBalance(customer, balance, amount);
        uint256 value = _countRedeemed(partnerId, amount);

        uint256 current = _currentEpoch();
        uint256 left = amount;
        bytes32 parts;
        for (uint256 epoch = _firstLiveEpoch(current); left > 0; ++epoch) {
            uint256 held = _heldAt(customer, epoch);
            if (held == 0) continue;
            uint256 take = held < left ? held : left;
            // take <= left: cannot underflow
            unchecked {
                left -= take;
            }
            _update(customer, address(0), epoch, take);
            parts = _linkPart(parts, epoch, take);
            uint64 seq = _nextSeq();
            emit PointsRedeemed(partnerId, customer, seq, epoch, take, ref, nonce, value);
            _record(
                keccak256(
                    abi.encode(PointsRedeemed.selector, partnerId, customer, seq, epoch, take, ref, nonce, value)
                )
            );
        }
        _redemptions[partnerId][ref] = _redemptionCommitment(customer, value, parts);
    }

    /// @dev Counts `amount` points as redeemed at `partnerId`, at the settlement value in force (returned).
    function _countRedeemed(uint32 partnerId, uint256 amount) private returns (uint256 value) {
        value = _clock.settlementValue;
        PartnerRecord storage record = _partners[partnerId];
        uint256 room = MAX_ALLOWANCE - record.redeemed;
        if (amount > room) revert LedgerAmountTooLarge(amount, room);
        // amount <= room keeps the partner's count below 2^64 and its value below 2^128; the total
        // redeemed stays below the total issued < 2^96: none of these can overflow
        unchecked {
            record.redeemed += uint64(amount);
            record.redeemedValue += uint128(amount * value);
            _totals.redeemed += uint96(amount);
        }
    }

    function _transferOldestFirst(address from, address to, uint256 value) private {
        uint256 balance = _balanceOf(from);
        if (balance < value) revert ERC20InsufficientBalance(from, balance, value);
        if (value == 0) emit Transfer(from, to, 0); // ERC-20: a zero-value transfer still emits Transfer
        uint256 left = value;
        for (uint256 epoch = _firstLiveEpoch(_currentEpoch()); left > 0; ++epoch) {
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
        uint256 current = _currentEpoch();
        if (_isExpired(epoch, current)) revert ERC7818TransferredExpiredToken(from, epoch);
        if (epoch > current) revert LedgerFutureEpoch(epoch, current);
        uint256 held = _heldAt(from, epoch);
        if (held < value) revert ERC20InsufficientBalance(from, held, value);
        if (value == 0) emit Transfer(from, to, 0); // ERC-20: a zero-value transfer still emits Transfer
        else _moveEpoch(from, to, epoch, value);
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
    /// allowance, and counts it as issued at the settlement value in force. Returns the partner id and the value.
    function _spendAllowance(address caller, uint256 amount) private returns (uint32 partnerId, uint256 value) {
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
        value = _clock.settlementValue;
        uint256 totalRoom = type(uint96).max - totals.issued;
        if (amount > totalRoom) revert LedgerAmountTooLarge(amount, totalRoom);
        // amount <= allowance, amount <= room and amount <= totalRoom: no count over- or underflows, and the
        // value stays below 2^64 * 2^64 = 2^128
        unchecked {
            slot.allowance = issuance.allowance - uint64(amount);
            slot.issued = issuance.issued + uint64(amount);
            slot.issuedValue = issuance.issuedValue + uint128(amount * value);
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
}
