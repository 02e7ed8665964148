// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/**
 * @title ERC-7818: Expirable ERC-20
 * @dev The interface of https://eips.ethereum.org/EIPS/eip-7818, with the standardized error it suggests.
 */
interface IERC7818 is IERC20 {
    /// @dev The unit in which epochs are measured.
    enum EPOCH_TYPE {
        BLOCKS_BASED,
        TIME_BASED
    }

    /// @dev A transfer tried to move points of an expired `epoch`.
    error ERC7818TransferredExpiredToken(address sender, uint256 epoch);

    /// @notice Balance of `account` in `epoch`; MUST be 0 when the epoch has expired.
    function balanceOfAtEpoch(uint256 epoch, address account) external view returns (uint256);

    /// @notice The epoch the chain's clock is in now.
    function currentEpoch() external view returns (uint256);

    /// @notice The length of one epoch, in the unit given by {epochType}.
    function epochLength() external view returns (uint256);

    /// @notice How epochs are measured.
    function epochType() external view returns (EPOCH_TYPE);

    /// @notice How many epochs points stay valid for, counting the epoch they were credited in.
    function validityDuration() external view returns (uint256);

    /// @notice Whether points of `epoch` have expired.
    function isEpochExpired(uint256 epoch) external view returns (bool);

    /// @notice Transfers `value` points of `epoch` from the caller to `to`.
    function transferAtEpoch(uint256 epoch, address to, uint256 value) external returns (bool);

    /// @notice Transfers `value` points of `epoch` from `from` to `to`, spending the caller's allowance.
    function transferFromAtEpoch(uint256 epoch, address from, address to, uint256 value) external returns (bool);
}
