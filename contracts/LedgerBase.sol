// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {NoncesKeyed} from "@openzeppelin/contracts/utils/NoncesKeyed.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {ILedgerEntries} from "./interfaces/ILedgerEntries.sol";

/**
 * @title LedgerBase
 * @notice The storage and the internal machinery that the ledger ({LoyaltyLedger}) and its extension
 * ({LoyaltyLedgerExtension}) share. The two are one contract at the ledger's address: the ledger's fallback
 * delegate-calls the extension, which runs in the ledger's storage. Both derive from this contract and from
 * nothing else with storage, so their storage layouts are the same by construction (and `loyalty compile`
 * refuses to write artifacts whose layouts differ).
 *
 * Storage of balances: each account has `validityDuration` buckets; points of epoch `e` live in bucket
 * `e % validityDuration`, tagged with `e`. The live epochs are always `validityDuration` consecutive numbers, so
 * they never share a bucket; a bucket still holding an expired epoch when a live epoch needs it is expired
 * (with its event) before it is reused. Every balance change goes through {_update}, which emits `Transfer`.
 *
 * Issuances and redemptions are remembered by a commitment (one storage word per reference, as a used-flag
 * costs): an issuance by `keccak256(root, epoch, issuedAt, value)` where `root` is the Merkle root of its items
 * (a single issue is a tree of one item, whose root is its leaf); a redemption by `keccak256(customer, value,
 * chain of (epoch, amount))`. A reversal or a refund presents what the entries recorded and is checked against it.
 */
abstract contract LedgerBase is
    ILedgerEntries,
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
    /// @notice The EIP-712 type both accounts sign to move every live point of `from` to `to`.
    bytes32 public constant MIGRATION_TYPEHASH =
        keccak256("Migration(address from,address to,uint256 nonce,uint256 deadline)");

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

    /// @dev Reversed and refunded counts are bounded by the issued and redeemed ones, so they fit the same widths.
    struct PartnerRecord {
        address operator;
        address settlement;
        Issuance issuance;
        uint64 redeemed;
        uint128 redeemedValue;
        int256 settledPoints;
        int256 settledValue;
        uint64 reversed;
        uint64 refunded;
        uint128 reversedValue;
        uint128 refundedValue;
    }

    /// @dev One finished pause: when it ended and the time spent paused up to then (all pauses so far).
    struct PauseRecord {
        uint64 resumedAt;
        uint64 pausedTotal;
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

    string internal _name;
    string internal _symbol;
    uint256 internal immutable _genesis;
    uint256 internal immutable _epochLength;
    uint256 internal immutable _validity;
    uint256 internal immutable _reversalWindow;

    mapping(address account => mapping(uint256 slot => Bucket)) internal _buckets;
    mapping(uint256 epoch => uint256) internal _epochSupply;
    mapping(address owner => mapping(address spender => uint256)) internal _allowances;

    mapping(address operator => OperatorAuth) internal _operators;
    mapping(address account => uint256) internal _rolesHeld;
    mapping(uint32 partnerId => PartnerRecord) internal _partners;
    uint32[] internal _partnerIds;
    /// @dev Issue and batch references: the issuance's commitment (non-zero once used).
    mapping(uint32 partnerId => mapping(bytes32 ref => bytes32)) internal _issuances;
    /// @dev Redemption references: the redemption's commitment (non-zero once used).
    mapping(uint32 partnerId => mapping(bytes32 ref => bytes32)) internal _redemptions;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) internal _settlementReferenceUsed;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) internal _returnReferenceUsed;
    mapping(uint32 partnerId => mapping(bytes32 ref => bool)) internal _refundReferenceUsed;
    /// @dev Points reversed so far per issued item, keyed by keccak256(issuance ref, item leaf).
    mapping(uint32 partnerId => mapping(bytes32 itemKey => uint256)) internal _reversed;
    /// @dev Points refunded so far per redemption reference.
    mapping(uint32 partnerId => mapping(bytes32 ref => uint256)) internal _refunded;
    /// @dev Where an account's points went when it migrated (the latest migration out of it): reversals and
    /// refunds follow these links to the account that holds the customer's points now.
    mapping(address account => address) internal _successors;
    /// @dev Every finished pause, in order: a reversal window is extended by the pauses since its issuance.
    PauseRecord[] internal _pauses;

    Totals internal _totals;
    Clock internal _clock;
    uint256 internal _totalExpired;
    bytes32 internal _head;
    int256 internal _totalSettledPoints;
    int256 internal _totalSettledValue;
    uint256 internal _totalReversed;
    uint256 internal _totalRefunded;

    constructor(
        address admin,
        uint48 adminDelay,
        uint256 genesis,
        uint256 epochLength_,
        uint256 validity_,
        uint256 reversalWindow_
    ) EIP712("LoyaltyLedger", "1") AccessControlDefaultAdminRules(adminDelay, admin) {
        _genesis = genesis;
        _epochLength = epochLength_;
        _validity = validity_;
        _reversalWindow = reversalWindow_;
    }

    /// @notice Whether the ledger is paused (its clock stands still).
    function paused() public view override returns (bool) {
        return _clock.paused;
    }

    // =================================================================== balances

    /**
     * @dev The one place balances change: moves `value` points of `epoch` from `from` to `to`; the zero
     * address on either side mints or burns and adjusts the epoch's supply. Emits {Transfer}.
     */
    function _update(address from, address to, uint256 epoch, uint256 value) internal {
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
        emit IERC20.Transfer(from, to, value);
    }

    /// @dev Expires what `account`'s bucket for live `epoch` still holds of an older (expired) epoch.
    function _retireStaleBucket(address account, uint256 epoch) internal {
        Bucket memory old = _buckets[account][epoch % _validity];
        if (old.epoch != epoch && old.amount != 0) _expire(account, old.epoch, old.amount);
    }

    function _expire(address account, uint256 epoch, uint256 amount) internal returns (uint256) {
        _update(account, address(0), epoch, amount);
        _recordExpiry(account, epoch, amount);
        return amount;
    }

    /// @dev Counts `amount` points of `epoch` as expired from `account` (the caller removed them) and records it.
    function _recordExpiry(address account, uint256 epoch, uint256 amount) internal {
        _totalExpired += amount;
        uint64 seq = _nextSeq();
        emit PointsExpired(account, seq, epoch, amount);
        _record(keccak256(abi.encode(PointsExpired.selector, account, seq, epoch, amount)));
    }

    function _moveEpoch(address from, address to, uint256 epoch, uint256 value) internal {
        _update(from, to, epoch, value);
        uint64 seq = _nextSeq();
        emit PointsTransferred(from, to, seq, epoch, value);
        _record(keccak256(abi.encode(PointsTransferred.selector, from, to, seq, epoch, value)));
    }

    function _balanceOf(address account) internal view returns (uint256 balance) {
        uint256 current = _currentEpoch();
        for (uint256 epoch = _firstLiveEpoch(current); epoch <= current; ++epoch) {
            balance += _heldAt(account, epoch);
        }
    }

    function _outstandingSupply() internal view returns (uint256 supply) {
        uint256 current = _currentEpoch();
        for (uint256 epoch = _firstLiveEpoch(current); epoch <= current; ++epoch) {
            supply += _epochSupply[epoch];
        }
    }

    function _heldAt(address account, uint256 epoch) internal view returns (uint256) {
        Bucket memory bucket = _buckets[account][epoch % _validity];
        return bucket.epoch == epoch ? bucket.amount : 0;
    }

    // =================================================================== the clock

    function _currentEpoch() internal view returns (uint256) {
        return _ledgerClock() / _epochLength;
    }

    function _ledgerClock() internal view returns (uint256) {
        return block.timestamp - _genesis - _pausedDuration();
    }

    function _pausedDuration() internal view returns (uint256) {
        Clock memory clock = _clock;
        return clock.paused ? clock.pausedTotal + (block.timestamp - clock.pausedAt) : clock.pausedTotal;
    }

    function _firstLiveEpoch(uint256 current) internal view returns (uint256) {
        return current + 1 > _validity ? current + 1 - _validity : 0;
    }

    function _isExpired(uint256 epoch, uint256 current) internal view returns (bool) {
        return epoch < current && current - epoch >= _validity; // epoch + validity <= current, without overflow
    }

    // =================================================================== the hash chain

    function _nextSeq() internal returns (uint64 seq) {
        seq = _totals.seq + 1;
        _totals.seq = seq;
    }

    function _record(bytes32 entryHash) internal {
        _head = keccak256(abi.encodePacked(_head, entryHash));
    }

    // =================================================================== issuances and redemptions

    /// @dev OpenZeppelin StandardMerkleTree's leaf of one issued item: keccak256(keccak256(abi.encode(...))).
    function _leaf(address account, uint256 amount, bytes32 itemRef) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, amount, itemRef))));
    }

    function _issuanceCommitment(bytes32 root, uint256 epoch, uint256 issuedAt, uint256 value)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(root, epoch, issuedAt, value));
    }

    /// @dev The next link of a redemption's chain of (epoch, amount) parts.
    function _linkPart(bytes32 chain, uint256 epoch, uint256 amount) internal pure returns (bytes32) {
        return keccak256(abi.encode(chain, epoch, amount));
    }

    function _redemptionCommitment(address customer, uint256 value, bytes32 parts) internal pure returns (bytes32) {
        return keccak256(abi.encode(customer, value, parts));
    }

    // =================================================================== partners

    /// @dev The partner `caller` operates, which must be active.
    function _activePartnerOf(address caller) internal view returns (OperatorAuth memory auth) {
        auth = _operators[caller];
        if (auth.partnerId == 0) revert LedgerUnknownPartner(caller);
        _requireOperating(caller, auth.partnerId, auth.status);
    }

    function _requireOperating(address caller, uint32 partnerId, PartnerStatus status) internal pure {
        if (status == PartnerStatus.None) revert LedgerRotatedOperator(caller, partnerId);
        _requireActive(partnerId, status);
    }

    function _requireActive(uint32 partnerId, PartnerStatus status) internal pure {
        if (status == PartnerStatus.Suspended) revert LedgerPartnerSuspended(partnerId);
        if (status == PartnerStatus.Offboarded) revert LedgerPartnerOffboarded(partnerId);
    }

    function _existingPartner(uint32 partnerId) internal view returns (PartnerRecord storage record) {
        record = _partners[partnerId];
        if (record.operator == address(0)) revert LedgerPartnerNotFound(partnerId);
    }

    function _checkAmount(uint256 amount) internal pure {
        if (amount == 0) revert LedgerZeroAmount();
        if (amount > MAX_AMOUNT) revert LedgerAmountTooLarge(amount, MAX_AMOUNT);
    }

    function _checkSettlementValue(uint256 value) internal pure {
        if (value > MAX_SETTLEMENT_VALUE) revert LedgerInvalidSettlementValue(value, MAX_SETTLEMENT_VALUE);
    }

    function _useReference(
        mapping(uint32 => mapping(bytes32 => bool)) storage used,
        uint32 partnerId,
        bytes32 ref
    ) internal {
        if (used[partnerId][ref]) revert LedgerReferenceUsed(partnerId, ref);
        used[partnerId][ref] = true;
    }

    // =================================================================== consents

    function _redemptionDigest(
        address customer,
        uint32 partnerId,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline
    ) internal view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(REDEMPTION_TYPEHASH, customer, partnerId, amount, ref, nonce, deadline))
        );
    }

    /**
     * @dev Accepts `customer`'s signature over `digest`: ECDSA first (accounts without code and
     * EIP-7702-delegated accounts, whose key still signs for them); only when that does not recover the
     * customer and the account has code, ERC-1271 with at most ERC1271_GAS_LIMIT gas.
     */
    function _checkConsent(address customer, bytes32 digest, bytes calldata signature) internal view {
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
}
