// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/**
 * @title ReferenceERC20
 * @notice The gas baseline: a plain OpenZeppelin ERC-20 whose owner mints and burns. Not deployed in production.
 */
contract ReferenceERC20 is ERC20, Ownable {
    constructor(address owner_) ERC20("Reference", "REF") Ownable(owner_) {}

    /// @notice Mints `value` to `to`. Requirements: owner. Emits {Transfer}.
    function mint(address to, uint256 value) external onlyOwner {
        _mint(to, value);
    }

    /// @notice Burns `value` from `from`. Requirements: owner. Emits {Transfer}.
    function burn(address from, uint256 value) external onlyOwner {
        _burn(from, value);
    }
}
