// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC7818} from "./IERC7818.sol";
import {ILedgerEntries} from "./ILedgerEntries.sol";
import {ILoyaltyLedgerExtension} from "./ILoyaltyLedgerExtension.sol";

/**
 * @title ILoyaltyLedgerCore
 * @dev The functions the ledger contract runs itself: the hot paths (issue, batch, redeem), ERC-20 and
 * ERC-7818, sweeping, pausing and the hash chain. Everything else is {ILoyaltyLedgerExtension}, run by the
 * ledger's fallback in its own storage (the ledger alone would exceed EIP-170's code size limit).
 */
interface ILoyaltyLedgerCore is ILedgerEntries, IERC7818 {
    function pause() external;

    function unpause() external;

    function issue(address to, uint256 amount, bytes32 ref, uint16 reason, bytes32 ruleHash) external;

    function issueBatch(
        address[] calldata recipients,
        uint256[] calldata amounts,
        bytes32[] calldata itemRefs,
        uint16 reason,
        bytes32 ruleHash
    ) external returns (bytes32 root);

    function redeem(
        address customer,
        uint256 amount,
        bytes32 ref,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    function sweepExpired(address[] calldata accounts) external returns (uint256 swept);

    function outstandingSupply() external view returns (uint256);

    function totalIssued() external view returns (uint256);

    function totalRedeemed() external view returns (uint256);

    function totalExpired() external view returns (uint256);

    function ledgerClock() external view returns (uint256);

    function pausedDuration() external view returns (uint256);

    function ledgerHead() external view returns (bytes32);

    function ledgerSequence() external view returns (uint64);

    function extension() external view returns (address);
}

/**
 * @title ILoyaltyLedger
 * @dev The whole external surface of the coalition's point ledger at its one address: {ILoyaltyLedgerCore} and
 * {ILoyaltyLedgerExtension}.
 */
interface ILoyaltyLedger is ILoyaltyLedgerCore, ILoyaltyLedgerExtension {}
