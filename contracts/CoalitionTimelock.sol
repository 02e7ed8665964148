// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/**
 * @title CoalitionTimelock
 * @notice The ledger's default admin (and treasury) in production: OpenZeppelin's TimelockController as is.
 * Every change that creates issuing power or moves money is scheduled here (`CallScheduled`, visible on
 * chain), can be cancelled by a canceller, and executes only after `getMinDelay()` seconds.
 */
contract CoalitionTimelock is TimelockController {
    /**
     * @param minDelay seconds between scheduling and execution.
     * @param proposers may schedule (and, as OpenZeppelin grants them, cancel) operations.
     * @param executors may execute ready operations (the zero address: anyone).
     * @param admin optional account that may grant the timelock's own roles during setup (zero for none).
     */
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}
}
