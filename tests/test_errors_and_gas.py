"""Revert decoding is the same on every backend; the gas targets of the ledger hold."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractCustomError

from chain import ContractRevert, UnknownRevert, load_artifact
from chain._gas_report import measure_gas
from conftest import AnvilNode, revert_decoder

STRANGER = "0x00000000000000000000000000000000DeaDBeef"


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


def test_unknown_selectors_are_kept_raw() -> None:
    revert = revert_decoder().decode(b"\xde\xad\xbe\xef" + b"\x00" * 32)
    assert isinstance(revert, UnknownRevert)
    assert revert.data == b"\xde\xad\xbe\xef" + b"\x00" * 32


def test_exceptions_without_revert_data_are_not_reverts() -> None:
    assert revert_decoder().from_exception(TimeoutError("read timed out")) is None


def test_gas_targets_against_openzeppelin_mint(anvil_node: AnvilNode) -> None:
    """Single issue to a fresh recipient <= 2.0x an OZ mint; batch of 100 <= 0.6x per recipient."""
    report = measure_gas(anvil_node.w3, load_artifact("LoyaltyLedger"), load_artifact("ReferenceERC20"))
    figures = report.figures()
    assert figures["issue_fresh_ratio"] <= 2.0, report.table()
    assert figures["batch100_per_recipient_ratio"] <= 0.6, report.table()
    # the batch amortises: per-recipient gas falls as the batch grows
    assert (
        figures["batch100_per_recipient"] < figures["batch10_per_recipient"] < figures["batch1_per_recipient"]
    )


def test_eth_tester_messages_quoted_either_way_decode() -> None:
    # 0xab followed by a quote byte: Python prints the literal with double quotes and "\xab'" inside.
    selector = function_signature_to_4byte_selector("LedgerInsufficientBalance(address,uint256,uint256)")
    account = to_checksum_address("0x0000000000000000000000000000ab27ab27ab27")
    data = selector + encode(["address", "uint256", "uint256"], [account, 10, 11])
    assert "\\xab'" in repr(data) and repr(data).startswith('b"')
    revert = revert_decoder().from_exception(TransactionFailed(f"execution reverted: {data!r}"))
    assert revert is not None
    assert (revert.name, revert.arguments) == ("LedgerInsufficientBalance", (account, 10, 11))
