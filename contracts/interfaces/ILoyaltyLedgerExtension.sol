// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILedgerEntries} from "./ILedgerEntries.sol";

/**
 * @title ILoyaltyLedgerExtension
 * @dev The ledger's functions that run in {LoyaltyLedgerExtension}, delegate-called by the ledger's fallback in
 * the ledger's storage, at the ledger's address: the partner registry, settlement, consents, returns
 * (reversals), refunds, account migration and the views that are not on a hot path.
 */
interface ILoyaltyLedgerExtension is ILedgerEntries {
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

    // ------------------------------------------------------------------ returns, refunds, migration

    function reverseIssuance(IssuanceItem calldata issuance, uint256 amount, bytes32 returnRef)
        external
        returns (uint256 recovered);

    function refundRedemption(RedemptionRecord calldata redemption, uint256 amount, bytes32 refundRef)
        external
        returns (uint256 restored);

    function migrateAccount(
        address from,
        address to,
        uint256 nonce,
        uint256 deadline,
        bytes calldata fromSignature,
        bytes calldata toSignature
    ) external;

    function recoverAccount(address lost, address to) external;

    // ------------------------------------------------------------------ customers and anyone

    function revokeConsent(uint256 nonce) external;

    function cancelConsent(address customer, uint256 nonce, bytes calldata signature) external;

    // ------------------------------------------------------------------ views

    function epochSupply(uint256 epoch) external view returns (uint256);

    function pendingExpiry() external view returns (uint256);

    function liveBalances(address account) external view returns (uint256[] memory epochs, uint256[] memory amounts);

    function genesisTimestamp() external view returns (uint256);

    function epochExpiresAt(uint256 epoch) external view returns (uint256);

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

    function migrationDigest(address from, address to, uint256 nonce, uint256 deadline) external view returns (bytes32);

    function totalReversed() external view returns (uint256);

    function totalRefunded() external view returns (uint256);

    function reversalWindow() external view returns (uint256);

    function returnReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function refundReferenceUsed(uint32 partnerId, bytes32 ref) external view returns (bool);

    function reversedOf(uint32 partnerId, bytes32 ref, address customer, uint256 amount, bytes32 itemRef)
        external
        view
        returns (uint256);

    function refundedOf(uint32 partnerId, bytes32 ref) external view returns (uint256);

    function holderOf(address account) external view returns (address holder);
}
