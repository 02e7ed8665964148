// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {ILoyaltyLedgerExtension} from "./interfaces/ILoyaltyLedgerExtension.sol";
import {LedgerBase} from "./LedgerBase.sol";

/**
 * @title LoyaltyLedgerExtension
 * @notice The part of {LoyaltyLedger} that is not on a hot path: the partner registry, settlement, consents,
 * returns (reversal of an issuance or of one batch item), refunds of redemptions, account migration and
 * recovery, and most views. The ledger's constructor deploys it and the ledger's fallback delegate-calls it, so
 * every function here runs in the ledger's storage, at the ledger's address, and its entries join the ledger's
 * one hash chain. Called directly (not through the ledger) its functions refuse with {LedgerExtensionOnly}.
 */
contract LoyaltyLedgerExtension is ILoyaltyLedgerExtension, LedgerBase {
    address private immutable _self = address(this);

    /// @dev Only inside the ledger (by delegatecall), where `address(this)` is the ledger's.
    modifier onlyDelegated() {
        if (address(this) == _self) revert LedgerExtensionOnly();
        _;
    }

    /// @dev Deployed by the ledger's constructor with the ledger's clock parameters (its immutables).
    constructor(uint256 genesis, uint256 epochLength_, uint256 validity_, uint256 reversalWindow_)
        LedgerBase(msg.sender, 0, genesis, epochLength_, validity_, reversalWindow_)
    {}

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
    ) external onlyDelegated onlyRole(DEFAULT_ADMIN_ROLE) {
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
    function increasePartnerAllowance(uint32 partnerId, uint256 amount) external onlyDelegated onlyRole(DEFAULT_ADMIN_ROLE) {
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
    function decreasePartnerAllowance(uint32 partnerId, uint256 amount) external onlyDelegated {
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
    function rotatePartnerOperator(uint32 partnerId, address newOperator) external onlyDelegated {
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
        onlyDelegated
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
        onlyDelegated
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
    function suspendPartner(uint32 partnerId) external onlyDelegated {
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
    function reactivatePartner(uint32 partnerId) external onlyDelegated onlyRole(DEFAULT_ADMIN_ROLE) {
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
    function offboardPartner(uint32 partnerId) external onlyDelegated onlyRole(DEFAULT_ADMIN_ROLE) {
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
    function setSettlementValue(uint256 value) external onlyDelegated onlyRole(TREASURY_ROLE) {
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
        onlyDelegated
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
    function setTransfersEnabled(bool enabled) external onlyDelegated onlyRole(DEFAULT_ADMIN_ROLE) {
        _clock.transfersEnabled = enabled;
        uint64 seq = _nextSeq();
        emit TransfersEnabledChanged(seq, enabled);
        _record(keccak256(abi.encode(TransfersEnabledChanged.selector, seq, enabled)));
    }

    // =================================================================== customers and anyone

    /**
     * @notice Revokes the caller's consent signed with `nonce` (a self-custody customer), so it can never be
     * redeemed. Works while paused.
     * Requirements: `nonce` is the next nonce of its key for the caller.
     * Emits {ConsentRevoked}.
     */
    function revokeConsent(uint256 nonce) external onlyDelegated {
        _revokeConsent(msg.sender, nonce);
    }

    /**
     * @notice Revokes `customer`'s consent signed with `nonce`, with the customer's EIP-712
     * `ConsentCancellation` signature; anyone may submit it (gasless for the customer). Works while paused.
     * Requirements: `signature` by `customer` over this chain, this contract, `customer` and `nonce`; `nonce`
     * is the next nonce of its key for the customer.
     * Emits {ConsentRevoked}.
     */
    function cancelConsent(address customer, uint256 nonce, bytes calldata signature) external onlyDelegated {
        _checkConsent(customer, cancellationDigest(customer, nonce), signature);
        _revokeConsent(customer, nonce);
    }

    // =================================================================== returns and refunds

    /**
     * @notice Reverses `amount` points of one issuance of the calling partner (a return): a single issue, or one
     * item of a batch proven by its Merkle proof. Takes back what the customer still holds (at the account its
     * migrations led to, if it migrated: see {holderOf}), from the issuance's epoch first, then oldest first; what was already spent or has expired is not recovered (no balance goes
     * below zero). Recovered points leave the partner's issued figures at the issuance's settlement value.
     * @param issuance the issuance as its entries recorded it (see {IssuanceItem}).
     * @param amount points of the issuance to reverse (its returned part).
     * @param returnRef the partner's reference of the return, usable once.
     * Requirements: not paused; the caller operates the issuing partner, active; 0 < `amount`; the issuance
     * exists under `issuance.ref` with these values and proof; within the reversal window of its block's
     * timestamp, extended by the time the ledger spent paused since (a window stands still while nobody may
     * reverse); cumulative reversals of the item at most what it issued; `returnRef` unused by the partner.
     * The bound is kept per leaf (customer, amount, order reference) of an issuance: a batch that names the same
     * order twice for the same customer and amount holds one leaf twice, and only one item's amount can be
     * reversed (never more than was issued; an auditor flags the order reference earned twice).
     * Emits {IssuanceReversed}, then {Transfer} and {PointsReversed} per epoch taken from.
     * @return recovered the points taken back.
     */
    function reverseIssuance(IssuanceItem calldata issuance, uint256 amount, bytes32 returnRef)
        external
        onlyDelegated
        whenNotPaused
        returns (uint256 recovered)
    {
        uint32 partnerId = _activePartnerOf(msg.sender).partnerId;
        _checkAmount(amount);
        bytes32 ref = issuance.ref;
        bytes32 leaf = _leaf(issuance.customer, issuance.amount, issuance.itemRef);
        bytes32 root = MerkleProof.processProofCalldata(issuance.proof, leaf);
        if (_issuances[partnerId][ref] != _issuanceCommitment(root, issuance.epoch, issuance.issuedAt, issuance.value)) {
            revert LedgerIssuanceNotFound(partnerId, ref);
        }
        // the window stands still while the ledger is paused, as the ledger's clock does (not paused here)
        uint256 closedAt =
            issuance.issuedAt + _reversalWindow + _clock.pausedTotal - _pausedBefore(issuance.issuedAt);
        if (block.timestamp > closedAt) revert LedgerReversalWindowClosed(ref, closedAt);
        bytes32 itemKey = keccak256(abi.encode(ref, leaf));
        uint256 reversed = _reversed[partnerId][itemKey];
        // reversed <= issuance.amount, kept so by this check on every reversal: cannot underflow
        unchecked {
            if (amount > issuance.amount - reversed) {
                revert LedgerReversalExceedsIssuance(ref, issuance.amount, reversed, amount);
            }
        }
        _reversed[partnerId][itemKey] = reversed + amount;
        _useReference(_returnReferenceUsed, partnerId, returnRef);

        address customer = issuance.customer;
        // a customer who migrated holds its points at the end of its migrations: a return follows them
        address holder = _holderOf(customer);
        uint256 balance = _balanceOf(holder);
        recovered = balance < amount ? balance : amount;
        uint256 value = issuance.value;
        PartnerRecord storage record = _partners[partnerId];
        // recovered <= what the partner issued (a 64-bit count) at a value below 2^64: the counts stay within
        // the issued ones, which fit their widths
        unchecked {
            record.reversed += uint64(recovered);
            record.reversedValue += uint128(recovered * value);
            _totalReversed += recovered;
        }
        uint64 seq = _nextSeq();
        emit IssuanceReversed(
            partnerId, customer, seq, ref, issuance.itemRef, issuance.amount, returnRef, amount, recovered, value
        );
        _record(
            keccak256(
                abi.encode(
                    IssuanceReversed.selector,
                    partnerId,
                    customer,
                    seq,
                    ref,
                    issuance.itemRef,
                    issuance.amount,
                    returnRef,
                    amount,
                    recovered,
                    value
                )
            )
        );
        uint256 current = _currentEpoch();
        uint256 left = recovered;
        uint256 own = issuance.epoch;
        if (!_isExpired(own, current)) left -= _takeBack(partnerId, holder, own, left, returnRef);
        for (uint256 epoch = _firstLiveEpoch(current); left > 0; ++epoch) {
            if (epoch != own) left -= _takeBack(partnerId, holder, epoch, left, returnRef);
        }
    }

    /**
     * @notice Refunds `amount` points of one redemption at the calling partner: they go back to the customer (to
     * the account its migrations led to, if it migrated: see {holderOf}), to the epochs they were spent from,
     * newest first (a live epoch gets them back; an epoch that expired in between takes them as
     * expired at once). The refunded points leave the partner's redeemed figures at the redemption's value.
     * @param redemption the redemption as its {PointsRedeemed} entries recorded it (see {RedemptionRecord}).
     * @param amount points to refund.
     * @param refundRef the partner's reference of the refund, usable once.
     * Requirements: not paused; the caller operates the accepting partner, active; 0 < `amount`; the redemption
     * exists under `redemption.ref` with these values; cumulative refunds at most what it redeemed; `refundRef`
     * unused by the partner.
     * Emits {RedemptionRefunded}, then per epoch refunded {Transfer} and {PointsRefunded} (or {PointsRefunded}
     * and {PointsExpired} for an expired epoch).
     * @return restored the points that are live again.
     */
    function refundRedemption(RedemptionRecord calldata redemption, uint256 amount, bytes32 refundRef)
        external
        onlyDelegated
        whenNotPaused
        returns (uint256 restored)
    {
        uint32 partnerId = _activePartnerOf(msg.sender).partnerId;
        _checkAmount(amount);
        uint256 count = redemption.epochs.length;
        if (count != redemption.amounts.length) revert LedgerRedemptionNotFound(partnerId, redemption.ref);
        bytes32 parts;
        uint256 redeemed;
        for (uint256 i; i < count; ++i) {
            parts = _linkPart(parts, redemption.epochs[i], redemption.amounts[i]);
            redeemed += redemption.amounts[i];
        }
        if (
            _redemptions[partnerId][redemption.ref]
                != _redemptionCommitment(redemption.customer, redemption.value, parts)
        ) revert LedgerRedemptionNotFound(partnerId, redemption.ref);
        uint256 refunded = _refunded[partnerId][redemption.ref];
        // refunded <= redeemed, kept so by this check on every refund: cannot underflow
        unchecked {
            if (amount > redeemed - refunded) {
                revert LedgerRefundExceedsRedemption(redemption.ref, redeemed, refunded, amount);
            }
        }
        _refunded[partnerId][redemption.ref] = refunded + amount;
        _useReference(_refundReferenceUsed, partnerId, refundRef);

        uint256 current = _currentEpoch();
        // first pass: what goes back to live epochs (the newest parts first, after what earlier refunds took)
        (uint256 skip, uint256 left) = (refunded, amount);
        for (uint256 i = count; i > 0 && left > 0;) {
            --i;
            (uint256 epoch, uint256 take) = _refundPart(redemption.amounts[i], redemption.epochs[i], skip, left);
            skip -= skip < redemption.amounts[i] ? skip : redemption.amounts[i];
            left -= take;
            if (!_isExpired(epoch, current)) restored += take;
        }
        _countRefunded(partnerId, amount, redemption.value);
        uint64 seq = _nextSeq();
        emit RedemptionRefunded(
            partnerId, redemption.customer, seq, redemption.ref, refundRef, amount, restored, redemption.value
        );
        _record(
            keccak256(
                abi.encode(
                    RedemptionRefunded.selector,
                    partnerId,
                    redemption.customer,
                    seq,
                    redemption.ref,
                    refundRef,
                    amount,
                    restored,
                    redemption.value
                )
            )
        );
        (skip, left) = (refunded, amount);
        address holder = _holderOf(redemption.customer);
        for (uint256 i = count; i > 0 && left > 0;) {
            --i;
            (uint256 epoch, uint256 take) = _refundPart(redemption.amounts[i], redemption.epochs[i], skip, left);
            skip -= skip < redemption.amounts[i] ? skip : redemption.amounts[i];
            if (take == 0) continue;
            left -= take;
            _giveBack(partnerId, holder, epoch, take, refundRef, _isExpired(epoch, current));
        }
    }

    // =================================================================== account migration

    /**
     * @notice Moves every live point of `from` to `to`, each keeping its epoch, with both accounts' EIP-712
     * `Migration` consent (custodial to self-custody, or self-custody to a new key); anyone may submit it
     * (gasless). Works while transfers are off.
     * Requirements: not paused; `from` and `to` non-zero and different, `to` never migrated away;
     * `block.timestamp` <= `deadline`;
     * signatures by `from` and by `to` over this chain, this contract and these values; `nonce` is the next
     * nonce of its key for `from`; `from` holds live points.
     * Emits {AccountMigrated}, then {Transfer} and {PointsTransferred} per epoch moved.
     */
    function migrateAccount(
        address from,
        address to,
        uint256 nonce,
        uint256 deadline,
        bytes calldata fromSignature,
        bytes calldata toSignature
    ) external onlyDelegated whenNotPaused {
        _checkMigration(from, to);
        if (block.timestamp > deadline) revert LedgerExpiredSignature(deadline);
        bytes32 digest = migrationDigest(from, to, nonce, deadline);
        _checkConsent(from, digest, fromSignature);
        _checkConsent(to, digest, toSignature);
        _useCheckedNonce(from, nonce);
        _migrate(from, to, nonce, false);
    }

    /**
     * @notice The coalition's recovery of a lost key: moves every live point of `lost` to `to`, each keeping its
     * epoch. In production the admin is the timelock, so the recovery is announced on chain ({CallScheduled})
     * for the whole delay before it can execute.
     * Requirements: admin role; not paused; `lost` and `to` non-zero and different, `to` never migrated away;
     * `lost` holds live points.
     * Emits {AccountMigrated} (`recovery` true), then {Transfer} and {PointsTransferred} per epoch moved.
     */
    function recoverAccount(address lost, address to)
        external
        onlyDelegated
        onlyRole(DEFAULT_ADMIN_ROLE)
        whenNotPaused
    {
        _checkMigration(lost, to);
        _migrate(lost, to, 0, true);
    }

    // =================================================================== views

    /// @notice Points of `epoch` still held (expired but unswept ones included).
    function epochSupply(uint256 epoch) external view returns (uint256) {
        return _epochSupply[epoch];
    }

    /// @notice Points taken back by reversals (returns).
    function totalReversed() external view returns (uint256) {
        return _totalReversed;
    }

    /// @notice Points given back by refunds of redemptions.
    function totalRefunded() external view returns (uint256) {
        return _totalRefunded;
    }

    /**
     * @notice Points that have expired but are not swept yet:
     * issued = (redeemed − refunded) + reversed + expired + pending + outstanding.
     */
    function pendingExpiry() external view returns (uint256) {
        return _totals.issued + _totalRefunded - _totals.redeemed - _totalReversed - _totalExpired
            - _outstandingSupply();
    }

    /// @notice `account`'s live points per epoch, oldest first (epochs without points left out).
    function liveBalances(address account) external view returns (uint256[] memory epochs, uint256[] memory amounts) {
        uint256 current = _currentEpoch();
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

    /// @notice Seconds after an issuance's block during which its partner may reverse it.
    function reversalWindow() external view returns (uint256) {
        return _reversalWindow;
    }

    /**
     * @notice The first timestamp at which points of `epoch` are expired, given the pauses so far and no
     * further pause (while paused: as if it ended now). Each later pause moves it by its length.
     */
    function epochExpiresAt(uint256 epoch) external view returns (uint256) {
        if (epoch > type(uint64).max) return type(uint256).max; // never, in practice: saturate, not overflow
        return _genesis + _pausedDuration() + (epoch + _validity) * _epochLength;
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
            record.reversed,
            record.refunded,
            record.reversedValue,
            record.refundedValue,
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
     * @notice Partner `partnerId`'s all-time settlement position: points redeemed at it (less refunds) minus
     * points it issued (less reversals), and the same in value (each entry at the settlement value in force
     * when it happened; a reversal or a refund at its original's). Positive: the coalition owes the partner;
     * negative: the partner owes it.
     */
    function partnerPosition(uint32 partnerId) public view returns (int256 netPoints, int256 netValue) {
        PartnerRecord storage record = _existingPartner(partnerId);
        // counters are below 2^64 (points) and 2^128 (value): the casts and differences cannot overflow
        netPoints = int256(uint256(record.redeemed)) - int256(uint256(record.refunded))
            - int256(uint256(record.issuance.issued)) + int256(uint256(record.reversed));
        netValue = int256(uint256(record.redeemedValue)) - int256(uint256(record.refundedValue))
            - int256(uint256(record.issuance.issuedValue)) + int256(uint256(record.reversedValue));
    }

    /// @notice Partner `partnerId`'s open position: all-time position minus what was settled.
    function partnerOpenPosition(uint32 partnerId) external view returns (int256 netPoints, int256 netValue) {
        (netPoints, netValue) = partnerPosition(partnerId);
        PartnerRecord storage record = _partners[partnerId];
        netPoints -= record.settledPoints;
        netValue -= record.settledValue;
    }

    /**
     * @notice The coalition pool's all-time position: points issued (less reversals) minus points redeemed
     * (less refunds): outstanding points plus breakage, and the same in value. It and every partner's position
     * sum to zero.
     */
    function coalitionPosition() public view returns (int256 netPoints, int256 netValue) {
        netPoints = int256(uint256(_totals.issued)) - int256(_totalReversed) - int256(uint256(_totals.redeemed))
            + int256(_totalRefunded);
        uint256 count = _partnerIds.length;
        for (uint256 i; i < count; ++i) {
            (, int256 partnerValue) = partnerPosition(_partnerIds[i]);
            netValue -= partnerValue;
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

    /// @notice Whether partner `partnerId` has used `ref` for an issue or a batch (a batch's ref is its root).
    function referenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _issuances[partnerId][ref] != 0;
    }

    /// @notice Whether partner `partnerId` has used `ref` for a redemption.
    function redemptionReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _redemptions[partnerId][ref] != 0;
    }

    /// @notice Whether a settlement with partner `partnerId` was recorded under payment reference `ref`.
    function settlementReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _settlementReferenceUsed[partnerId][ref];
    }

    /// @notice Whether partner `partnerId` has used `ref` for a return (reversal).
    function returnReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _returnReferenceUsed[partnerId][ref];
    }

    /// @notice Whether partner `partnerId` has used `ref` for a refund.
    function refundReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool) {
        return _refundReferenceUsed[partnerId][ref];
    }

    /// @notice Points of the item (`customer`, `amount`, `itemRef`) of partner `partnerId`'s issuance `ref` reversed
    /// so far (requested, recovered or not).
    function reversedOf(uint32 partnerId, bytes32 ref, address customer, uint256 amount, bytes32 itemRef)
        external
        view
        returns (uint256)
    {
        return _reversed[partnerId][keccak256(abi.encode(ref, _leaf(customer, amount, itemRef)))];
    }

    /// @notice The account holding `account`'s points: itself, or where its migrations led (the target of its
    /// latest migration, followed on). Reversals take back from it and refunds go to it.
    function holderOf(address account) external view returns (address holder) {
        holder = account;
        for (address next = _successors[holder]; next != address(0); next = _successors[holder]) {
            holder = next;
        }
    }

    /// @notice Points of partner `partnerId`'s redemption `ref` refunded so far.
    function refundedOf(uint32 partnerId, bytes32 ref) external view returns (uint256) {
        return _refunded[partnerId][ref];
    }

    /// @notice The EIP-712 digest a customer signs to consent to a redemption.
    function redemptionDigest(
        address customer,
        uint32 partnerId,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32) {
        return _redemptionDigest(customer, partnerId, amount, ref, nonce, deadline);
    }

    /// @notice The EIP-712 digest a customer signs to revoke the consent it signed with `nonce`.
    function cancellationDigest(address customer, uint256 nonce) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CANCELLATION_TYPEHASH, customer, nonce)));
    }

    /// @notice The EIP-712 digest both accounts sign to move every live point of `from` to `to`.
    function migrationDigest(address from, address to, uint256 nonce, uint256 deadline) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(MIGRATION_TYPEHASH, from, to, nonce, deadline)));
    }

    /// @notice The EIP-712 domain separator of this chain and contract.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // =================================================================== internals

    /// @dev The operator record of partner `partnerId`, which must exist and not be offboarded.
    function _liveAuth(uint32 partnerId) internal view returns (OperatorAuth storage auth) {
        auth = _operators[_existingPartner(partnerId).operator];
        if (auth.status == PartnerStatus.Offboarded) revert LedgerPartnerOffboarded(partnerId);
    }

    /// @dev A key that may become a partner's operator: non-zero, never an operator, holding no role, and not
    /// the pending admin of a handover.
    function _checkNewOperator(address operator) internal view {
        (address pendingAdmin,) = pendingDefaultAdmin();
        if (
            operator == address(0) || _operators[operator].partnerId != 0 || _rolesHeld[operator] != 0
                || operator == pendingAdmin
        ) {
            revert LedgerInvalidOperator(operator);
        }
    }

    function _checkEitherRole(bytes32 role, bytes32 otherRole) internal view {
        if (!hasRole(role, msg.sender) && !hasRole(otherRole, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, role);
        }
    }

    function _checkMagnitude(int256 amount, uint256 max) internal pure {
        // -(amount + 1) cannot overflow, even for type(int256).min, whose magnitude is 2^255
        uint256 magnitude = amount < 0 ? uint256(-(amount + 1)) + 1 : uint256(amount);
        if (magnitude > max) revert LedgerAmountTooLarge(magnitude, max);
    }

    function _revokeConsent(address customer, uint256 nonce) internal {
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

    function _setStatus(uint32 partnerId, OperatorAuth storage auth, PartnerStatus status) internal {
        auth.status = status;
        uint64 seq = _nextSeq();
        emit PartnerStatusChanged(partnerId, seq, uint8(status));
        _record(keccak256(abi.encode(PartnerStatusChanged.selector, partnerId, seq, uint8(status))));
    }

    /// @dev The account that holds `account`'s points: itself, or the end of its chain of migrations (a
    /// longer chain is shortened to one link on the way, so nobody can make returns costly by hopping).
    function _holderOf(address account) internal returns (address holder) {
        holder = account;
        for (address next = _successors[holder]; next != address(0); next = _successors[holder]) {
            holder = next;
        }
        if (holder != account && _successors[account] != holder) _successors[account] = holder;
    }

    /// @dev The time the ledger had spent paused by `timestamp` (a moment it was not paused: every pause that
    /// ended by then), found by binary search over the finished pauses.
    function _pausedBefore(uint256 timestamp) internal view returns (uint256) {
        (uint256 low, uint256 high) = (0, _pauses.length);
        while (low < high) {
            uint256 middle = (low + high) / 2;
            if (_pauses[middle].resumedAt <= timestamp) low = middle + 1;
            else high = middle;
        }
        return low == 0 ? 0 : _pauses[low - 1].pausedTotal;
    }

    /// @dev Takes up to `left` of `customer`'s points of live `epoch` back for a reversal; returns how many.
    function _takeBack(uint32 partnerId, address customer, uint256 epoch, uint256 left, bytes32 returnRef)
        internal
        returns (uint256 take)
    {
        uint256 held = _heldAt(customer, epoch);
        take = held < left ? held : left;
        if (take == 0) return 0;
        _update(customer, address(0), epoch, take);
        uint64 seq = _nextSeq();
        emit PointsReversed(partnerId, customer, seq, epoch, take, returnRef);
        _record(keccak256(abi.encode(PointsReversed.selector, partnerId, customer, seq, epoch, take, returnRef)));
    }

    /// @dev The part of a redemption's part of `partAmount` points of `epoch` that a refund of `left` more
    /// takes, after `skip` points already refunded from this part and newer ones.
    function _refundPart(uint256 partAmount, uint256 epoch, uint256 skip, uint256 left)
        internal
        pure
        returns (uint256, uint256 take)
    {
        if (skip >= partAmount) return (epoch, 0);
        // skip < partAmount: cannot underflow
        unchecked {
            uint256 room = partAmount - skip;
            take = room < left ? room : left;
        }
        return (epoch, take);
    }

    /// @dev Gives `amount` points of `epoch` back to `customer` for a refund; an expired epoch's expire at once.
    function _giveBack(
        uint32 partnerId,
        address customer,
        uint256 epoch,
        uint256 amount,
        bytes32 refundRef,
        bool expired
    ) internal {
        if (!expired) _update(address(0), customer, epoch, amount);
        uint64 seq = _nextSeq();
        emit PointsRefunded(partnerId, customer, seq, epoch, amount, refundRef);
        _record(keccak256(abi.encode(PointsRefunded.selector, partnerId, customer, seq, epoch, amount, refundRef)));
        // an expired epoch's bucket may hold a live epoch now: the points never reach a balance
        if (expired) _recordExpiry(customer, epoch, amount);
    }

    /// @dev Takes a refund of `amount` points at `value` each out of partner `partnerId`'s redeemed figures.
    function _countRefunded(uint32 partnerId, uint256 amount, uint256 value) internal {
        PartnerRecord storage record = _partners[partnerId];
        // the redemption's commitment proves amount <= what it redeemed at `value`: the counts stay within the
        // redeemed ones, which fit their widths
        unchecked {
            record.refunded += uint64(amount);
            record.refundedValue += uint128(amount * value);
            _totalRefunded += amount;
        }
    }

    /// @dev Refuses a migration to or from the zero address, to the same account, or to an account that
    /// migrated away (a retired account: so the links never form a cycle). Checked before any signature.
    function _checkMigration(address from, address to) internal view {
        if (from == address(0) || to == address(0) || from == to || _successors[to] != address(0)) {
            revert LedgerInvalidMigration(from, to);
        }
    }

    /// @dev Moves every live point of `from` to `to` (checked by {_checkMigration}), keeping epochs, and records
    /// the migration.
    function _migrate(address from, address to, uint256 nonce, bool recovery) internal {
        _successors[from] = to;
        uint256 amount = _balanceOf(from);
        if (amount == 0) revert LedgerInsufficientBalance(from, 0, 1);
        uint64 seq = _nextSeq();
        emit AccountMigrated(from, to, seq, nonce, recovery, amount);
        _record(keccak256(abi.encode(AccountMigrated.selector, from, to, seq, nonce, recovery, amount)));
        uint256 current = _currentEpoch();
        for (uint256 epoch = _firstLiveEpoch(current); epoch <= current; ++epoch) {
            uint256 held = _heldAt(from, epoch);
            if (held != 0) _moveEpoch(from, to, epoch, held);
        }
    }
}
