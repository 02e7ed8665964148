// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/**
 * @title GasBurningWallet
 * @notice A hostile ERC-1271 wallet for tests: it burns every unit of gas it is given before answering.
 */
contract GasBurningWallet is IERC1271 {
    /// @inheritdoc IERC1271
    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        uint256 sink;
        while (gasleft() > 200) {
            sink = uint256(keccak256(abi.encode(sink)));
        }
        return sink == 0 ? bytes4(0) : IERC1271.isValidSignature.selector;
    }
}
