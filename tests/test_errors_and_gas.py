"""Revert decoding is the same on every backend; the gas targets of the ledger hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractCustomError

from chain import ContractRevert, UnknownRevert, load_artifact
from chain._errors import abi_type
from chain._gas_report import BLOCK_GAS_LIMIT, GasReport, measure_gas
from conftest import ACTIVE, AnvilNode, Ledger, expect_revert, revert_decoder

STRANGER = "0x00000000000000000000000000000000DeaDBeef"

#: The rows of the operations v2 added (issue 10), each measured by the gas report.
V2_ROWS = [
    "redeem_erc1271",
    "rotate_operator_by_admin",
    "rotate_operator_by_partner",
    "set_partner_rights",
    "increase_allowance",
    "decrease_allowance",
    "set_settlement_value",
    "record_settlement",
    "offboard_partner",
    "grant_role",
    "pause",
    "unpause",
    "revoke_consent",
    "cancel_consent",
]
#: The rows of returns, refunds and migration (ledger v2, 2 of 2).
RETURN_ROWS = ["reverse_issue", "reverse_batch_item_512", "refund", "migrate_12_epochs"]


def _allowance_exceeded() -> bytes:
    selector = function_signature_to_4byte_selector("LedgerAllowanceExceeded(uint32,uint256,uint256)")
    return selector + encode(["uint32", "uint256", "uint256"], [7, 10, 11])


def test_eth_tester_and_json_rpc_reverts_decode_to_the_same_error() -> None:
    decoder = revert_decoder()
    data = _allowance_exceeded()
    from_tester = decoder.from_exception(TransactionFailed(f"execution reverted: {data!r}"))
    from_rpc = decoder.from_exception(ContractCustomError("0x" + data.hex(), "0x" + data.hex()))
    for revert in (from_tester, from_rpc):
        assert isinstance(revert, ContractRevert)
        assert (revert.name, revert.arguments) == ("LedgerAllowanceExceeded", (7, 10, 11))
    assert str(from_rpc) == "LedgerAllowanceExceeded(7, 10, 11)"


def test_address_arguments_come_back_checksummed() -> None:
    selector = function_signature_to_4byte_selector("LedgerUnknownPartner(address)")
    revert = revert_decoder().decode(selector + encode(["address"], [STRANGER.lower()]))
    assert revert.arguments == (STRANGER,)


@pytest.mark.parametrize(
    ("signature", "types", "values"),
    [("Error(string)", ["string"], ["boom"]), ("Panic(uint256)", ["uint256"], [0x11])],
)
def test_builtin_errors_decode(signature: str, types: list[str], values: list[object]) -> None:
    data = function_signature_to_4byte_selector(signature) + encode(types, values)
    revert = revert_decoder().decode(data)
    assert (revert.name, revert.arguments) == (signature.split("(")[0], tuple(values))


def _sample(abi_type: str) -> Any:
    """A value of ``abi_type`` whose encoding is distinctive (not all zero bytes)."""
    if abi_type == "address":
        return STRANGER
    if abi_type == "bool":
        return True
    if abi_type == "string":
        return "too long"
    if abi_type.startswith("bytes"):
        return b"\x5a" * int(abi_type[5:] or 3)
    signed = abi_type.startswith("int")
    bits = int(abi_type.removeprefix("u").removeprefix("int") or 256)
    return -(2 ** (bits - 2)) if signed else 2**bits - 2


def _v2_errors() -> list[tuple[str, list[str]]]:
    errors = {}
    for name in ("LoyaltyLedger", "CoalitionTimelock", "ERC1271Wallet"):
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                errors[item["name"]] = [abi_type(p) for p in item["inputs"]]
    return sorted(errors.items())


@pytest.mark.parametrize(("name", "types"), _v2_errors(), ids=[name for name, _ in _v2_errors()])
def test_every_contract_error_decodes_with_its_arguments(name: str, types: list[str]) -> None:
    """Each custom error of the v2 contracts (the ledger's own, OpenZeppelin's it inherits, the timelock's)
    decodes by name with its arguments, from eth-tester's message and from a JSON-RPC error alike."""
    values = [_sample(t) for t in types]
    data = function_signature_to_4byte_selector(f"{name}({','.join(types)})") + encode(types, values)
    decoder = revert_decoder()
    from_tester = decoder.from_exception(TransactionFailed(f"execution reverted: {data!r}"))
    from_rpc = decoder.from_exception(ContractCustomError("0x" + data.hex(), "0x" + data.hex()))
    for revert in (from_tester, from_rpc):
        assert isinstance(revert, ContractRevert) and not isinstance(revert, UnknownRevert)
        assert (revert.name, revert.arguments) == (name, tuple(values))


def test_live_v2_reverts_decode_alike_on_both_backends(ledger: Ledger) -> None:
    """A rotated-away key and a stale keyed nonce are refused with the same typed errors on either node."""
    actors = ledger.actors
    new_key = to_checksum_address("0x" + "5a" * 20)
    ledger.transact("rotatePartnerOperator", ACTIVE, new_key, sender=actors.admin)
    with pytest.raises(ContractRevert) as rotated:
        ledger.issue(actors.customer, 1, sender=actors.partner)
    expect_revert(rotated, "LedgerRotatedOperator", actors.partner, ACTIVE)
    with pytest.raises(ContractRevert) as stale:
        ledger.transact("revokeConsent", (7 << 64) | 1, sender=actors.customer)
    expect_revert(stale, "InvalidAccountNonce", actors.customer, 7 << 64)


def test_unknown_selectors_are_kept_raw() -> None:
    revert = revert_decoder().decode(b"\xde\xad\xbe\xef" + b"\x00" * 32)
    assert isinstance(revert, UnknownRevert)
    assert revert.data == b"\xde\xad\xbe\xef" + b"\x00" * 32


def test_exceptions_without_revert_data_are_not_reverts() -> None:
    assert revert_decoder().from_exception(TimeoutError("read timed out")) is None


@pytest.fixture(scope="module")
def gas_report(anvil_node: AnvilNode) -> Iterator[GasReport]:
    """The gas report measured once on the session's anvil; its chain and clock are restored afterwards."""
    snapshot = anvil_node.snapshot()
    try:
        yield measure_gas(
            anvil_node.w3,
            load_artifact("LoyaltyLedger"),
            load_artifact("ReferenceERC20"),
            load_artifact("ERC1271Wallet"),
        )
    finally:
        anvil_node.revert(snapshot)


def test_gas_targets_against_openzeppelin_mint(gas_report: GasReport) -> None:
    """Single issue to a fresh recipient <= 2.0x an OZ mint; batch of 100 with an item reference per
    recipient (the contract builds their Merkle tree) <= 0.65x per recipient."""
    figures = gas_report.figures()
    assert figures["issue_fresh_ratio"] <= 2.0, gas_report.table()
    assert figures["batch100_per_recipient_ratio"] <= 0.65, gas_report.table()
    # the batch amortises: per-recipient gas falls as the batch grows
    assert (
        figures["batch100_per_recipient"] < figures["batch10_per_recipient"] < figures["batch1_per_recipient"]
    )


def test_gas_at_the_validity_bound_is_well_under_a_block(gas_report: GasReport) -> None:
    """balanceOf, a redemption over every epoch and a sweep of one account at MAX_VALIDITY = 120 epochs each
    stay under 10% of a 30M block gas limit."""
    rows = gas_report.rows
    for name in ("v120_balance_of", "v120_redeem_120_epochs", "v120_sweep_120_epochs"):
        assert rows[name] < BLOCK_GAS_LIMIT // 10, gas_report.table()
    # the bound's cost is the buckets read: ten times the epochs, about ten times the 12-epoch figures
    assert rows["v12_balance_of"] < rows["v120_balance_of"]
    assert rows["sweep_12_epochs"] < rows["v120_sweep_120_epochs"]


def test_gas_of_the_v2_operations(gas_report: GasReport) -> None:
    """Every operation of the v2 surface is in the report; the ERC-1271 path of a redemption costs more than
    the ECDSA one and at most the wallet's gas stipend (ERC1271_GAS_LIMIT = 100,000) more."""
    rows = gas_report.rows
    for name in V2_ROWS:
        assert 21_000 < rows[name] < 1_000_000, f"{name}: {rows.get(name)}"
    wallet_overhead = rows["redeem_erc1271"] - rows["redeem_next_customer"]
    assert 0 < wallet_overhead <= 100_000, gas_report.table()
    figures = gas_report.figures()
    assert set(rows) <= set(figures), "the JSON summary carries every row of the table"
    assert all(name in gas_report.table() for name in rows)


def test_gas_of_returns_refunds_and_migration(gas_report: GasReport) -> None:
    """A reversal, a refund and a 12-epoch migration each cost well under a block; the Merkle proof of a
    512-item batch (9 or 10 hashes in calldata) adds a few thousand gas to a reversal, and moving 12 epochs
    to a fresh account costs about 12 fresh balance slots."""
    rows = gas_report.rows
    for name in RETURN_ROWS:
        assert 21_000 < rows[name] < 1_000_000, gas_report.table()
    proof_overhead = rows["reverse_batch_item_512"] - rows["reverse_issue"]
    assert 0 < proof_overhead < 15_000, gas_report.table()
    assert 12 * 22_100 < rows["migrate_12_epochs"] < 12 * 50_000, gas_report.table()
    table = gas_report.table()
    assert all(name in table for name in RETURN_ROWS)
    assert set(RETURN_ROWS) <= set(gas_report.figures())


def test_eth_tester_messages_quoted_either_way_decode() -> None:
    # 0xab followed by a quote byte: Python prints the literal with double quotes and "\xab'" inside.
    selector = function_signature_to_4byte_selector("LedgerInsufficientBalance(address,uint256,uint256)")
    account = to_checksum_address("0x0000000000000000000000000000ab27ab27ab27")
    data = selector + encode(["address", "uint256", "uint256"], [account, 10, 11])
    assert "\\xab'" in repr(data) and repr(data).startswith('b"')
    revert = revert_decoder().from_exception(TransactionFailed(f"execution reverted: {data!r}"))
    assert revert is not None
    assert (revert.name, revert.arguments) == ("LedgerInsufficientBalance", (account, 10, 11))
