"""Signers: key files, local signing byte-equal to eth-account, dev keys, and the remote (JSON-RPC) seam.

What holds for every signer: transactions it signs are accepted and mined by a real node and recover
to its address; typed-data signatures recover to its address; nothing it prints or raises contains a
private key or a password.
"""

from __future__ import annotations

import json
import pickle
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import PermanentError, RetryableError
from chain._eip712 import (
    cancellation_typed_data,
    redemption_typed_data,
    sign_cancellation,
    sign_redemption,
    typed_data_digest,
)
from chain._signer import (
    LOCAL_CHAIN_IDS,
    DevKeyRefused,
    InvalidKey,
    InvalidTransaction,
    JsonRpcSigner,
    KeyExists,
    KeyNotFound,
    Keystore,
    KeystoreError,
    LocalSigner,
    PasswordError,
    RemoteSignerError,
    RemoteSignerUnavailable,
    Signer,
    SignerError,
    WrongPassword,
    dev_account,
    dev_signers,
    read_password,
)
from conftest import AnvilNode, EthTesterNode, new_customer, random_ref

SMALL_SCRYPT_N = 2**10  # eth-account's standard is 2**18; small keeps the suite fast
PASSWORD = f"pw-{secrets.token_hex(12)}"  # generated for this run
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DEV_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_TYPED_DATA = "eth_signTypedData_v4"


# --------------------------------------------------------------------------- helpers


def key_spellings(key: bytes) -> list[str]:
    """Every way a key's hex could show up in text."""
    plain = key.hex()
    return [plain, plain.upper(), "0x" + plain, str(key), repr(key), str(int.from_bytes(key, "big"))]


def assert_no_secret(text: str, *keys: bytes, passwords: tuple[str, ...] = ()) -> None:
    for key in keys:
        for spelling in key_spellings(key):
            assert spelling not in text, "a private key leaked"
    for password in passwords:
        assert password not in text, "a password leaked"


def describe(exc: BaseException) -> str:
    """All the text an exception shows when logged."""
    return f"{exc} {exc!r} {exc.args!r}"


def dev_key(index: int) -> bytes:
    return key_from_seed(seed_from_mnemonic(DEV_MNEMONIC, ""), f"m/44'/60'/0'/0/{index}")


def transfer(signer: Signer, w3: Any, to: str, value: int = 1) -> dict[str, Any]:
    """A plain EIP-1559 value transfer from ``signer``, fees priced off the latest block."""
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
    return {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(signer.address),
        "gas": 21_000,
        "maxPriorityFeePerGas": 10**9,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "value": value,
        "to": to,
        "data": "0x",
    }


def mine_raw(w3: Any, raw: bytes) -> Any:
    """Sends a raw signed transaction and returns the mined transaction (receipt checked)."""
    tx_hash = w3.eth.send_raw_transaction(raw)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1
    return w3.eth.get_transaction(tx_hash)


def redemption(chain_id: int, customer: str, *, amount: int = 250) -> dict[str, Any]:
    return redemption_typed_data(
        chain_id=chain_id,
        contract=CONTRACT,
        customer=customer,
        partner_id=1,
        amount=amount,
        ref=random_ref(),
        nonce=3,
        deadline=2**40,
    )


def recover_typed(full_message: dict[str, Any], signature: bytes) -> str:
    return str(Account.recover_message(encode_typed_data(full_message=full_message), signature=signature))


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys", scrypt_n=SMALL_SCRYPT_N)


@pytest.fixture
def anvil(anvil_node: AnvilNode) -> Iterator[AnvilNode]:
    """The session's anvil, restored after the test (these tests move funds and nonces)."""
    snapshot = anvil_node.snapshot()
    yield anvil_node
    anvil_node.revert(snapshot)


@pytest.fixture
def funded_signer(anvil: AnvilNode) -> LocalSigner:
    """A fresh key with 1 ether on anvil, sent from an unlocked dev account."""
    signer = LocalSigner(new_customer())
    ether = anvil.w3.to_wei(1, "ether")
    tx_hash = anvil.w3.eth.send_transaction(
        {"from": anvil.accounts[11], "to": signer.address, "value": ether}
    )
    assert anvil.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return signer


# --------------------------------------------------------------------------- the error tree


def test_error_tree() -> None:
    for error in (KeystoreError, DevKeyRefused, InvalidTransaction, RemoteSignerError):
        assert issubclass(error, SignerError)
    for error in (WrongPassword, KeyNotFound, KeyExists, InvalidKey, PasswordError):
        assert issubclass(error, KeystoreError)
    assert issubclass(SignerError, PermanentError)
    assert issubclass(RemoteSignerUnavailable, RetryableError)


# --------------------------------------------------------------------------- keystore


def test_keystore_round_trip(keystore: Keystore) -> None:
    assert keystore.addresses() == []
    address = keystore.create(PASSWORD)

    assert keystore.addresses() == [address]
    signer = keystore.load(address, PASSWORD)
    assert signer.address == address
    assert isinstance(signer, Signer)


def test_key_files_are_private_v3_files(keystore: Keystore) -> None:
    address = keystore.create(PASSWORD)

    assert stat.S_IMODE(keystore.directory.stat().st_mode) == 0o700
    (path,) = keystore.directory.iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.name.startswith("UTC--") and path.name.endswith("--" + address[2:].lower())
    keyfile = json.loads(path.read_text())
    assert keyfile["version"] == 3
    assert keyfile["crypto"]["kdf"] == "scrypt"
    assert keyfile["crypto"]["kdfparams"]["n"] == SMALL_SCRYPT_N


def test_import_then_load_gives_the_same_account(keystore: Keystore) -> None:
    hex_account, bytes_account = new_customer(), new_customer()

    from_hex = keystore.import_key(bytes(hex_account.key).hex(), PASSWORD)  # no 0x prefix
    from_bytes = keystore.import_key(bytes(bytes_account.key), PASSWORD)

    assert (from_hex, from_bytes) == (hex_account.address, bytes_account.address)
    assert set(keystore.addresses()) == {hex_account.address, bytes_account.address}
    assert keystore.load(hex_account.address, PASSWORD).address == hex_account.address
    assert keystore.load(bytes_account.address.lower(), PASSWORD).address == bytes_account.address
    for path in keystore.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert_no_secret(path.read_text(), bytes(hex_account.key), bytes(bytes_account.key))


def test_a_key_is_imported_once(keystore: Keystore) -> None:
    account = new_customer()
    keystore.import_key(HexBytes(account.key).to_0x_hex(), PASSWORD)

    with pytest.raises(KeyExists):
        keystore.import_key(bytes(account.key), "another password")
    assert keystore.addresses() == [account.address]


def test_wrong_password_is_refused_without_leaking(keystore: Keystore) -> None:
    account = new_customer()
    address = keystore.import_key(bytes(account.key), PASSWORD)
    wrong = "Tr0ub4dor&3-not-it"

    with pytest.raises(WrongPassword) as excinfo:
        keystore.load(address, wrong)

    assert address in str(excinfo.value)
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
    assert_no_secret(describe(excinfo.value), bytes(account.key), passwords=(wrong, PASSWORD))


def test_unknown_address_is_key_not_found(keystore: Keystore) -> None:
    keystore.create(PASSWORD)
    stranger = new_customer()

    with pytest.raises(KeyNotFound) as excinfo:
        keystore.load(stranger.address, PASSWORD)
    assert stranger.address in str(excinfo.value)

    # A key pasted where an address belongs is not echoed back.
    with pytest.raises(KeyNotFound) as excinfo:
        keystore.load(HexBytes(stranger.key).to_0x_hex(), PASSWORD)
    assert_no_secret(describe(excinfo.value), bytes(stranger.key))


def test_load_from_an_empty_directory_is_key_not_found(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFound):
        Keystore(tmp_path / "nowhere").load(new_customer().address, PASSWORD)


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.mark.parametrize(
    "malformed",
    [
        "0x" + "ab" * 31,  # 31 bytes
        "0x" + "ab" * 33,  # 33 bytes
        "0x" + "zq" * 32,  # not hex
        "0x" + "00" * 32,  # zero
        SECP256K1_N.to_bytes(32, "big").hex(),  # the curve order itself
        b"\x11" * 31,
        "words, not a key: " + "lorem ipsum " * 4,
    ],
    ids=["short", "long", "not-hex", "zero", "order", "short-bytes", "words"],
)
def test_malformed_import_is_invalid_key_and_not_echoed(keystore: Keystore, malformed: str | bytes) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        keystore.import_key(malformed, PASSWORD)

    text = describe(excinfo.value)
    shown = malformed.hex() if isinstance(malformed, bytes) else malformed.removeprefix("0x")
    assert shown not in text and str(malformed) not in text
    assert keystore.addresses() == []


def test_empty_password_is_refused(keystore: Keystore) -> None:
    with pytest.raises(PasswordError):
        keystore.create("")


def test_foreign_files_in_the_directory_are_reported(keystore: Keystore) -> None:
    keystore.create(PASSWORD)
    (keystore.directory / "notes.txt").write_text("not a key file")

    with pytest.raises(KeystoreError, match=r"notes\.txt"):
        keystore.addresses()


# --------------------------------------------------------------------------- passwords


def test_read_password_from_a_file_drops_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(" spaced pass \n\n")

    assert read_password(file=path, value=None) == " spaced pass \n"


def test_read_password_from_a_value() -> None:
    assert read_password(file=None, value=PASSWORD) == PASSWORD


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["missing", "empty", "only-newline"])
def test_read_password_refuses_a_missing_or_empty_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)

    with pytest.raises(PasswordError):
        read_password(file=path, value=None)


def test_read_password_needs_exactly_one_source(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(PASSWORD)

    with pytest.raises(PasswordError) as neither:
        read_password(file=None, value=None)
    with pytest.raises(PasswordError) as both:
        read_password(file=path, value="other secret")
    with pytest.raises(PasswordError):
        read_password(file=None, value="")
    for excinfo in (neither, both):
        assert_no_secret(describe(excinfo.value), passwords=(PASSWORD, "other secret"))


# --------------------------------------------------------------------------- local signing

# A round trip through eth-account's validated, audited encoder: same RFC 6979 nonce, same bytes.
UINT = st.integers(min_value=0, max_value=2**256 - 1)
SMALL = st.integers(min_value=0, max_value=2**64 - 1)
_ONE_KEY = new_customer()


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "chainId": draw(st.sampled_from([1, 137, 31337, 131277322940537]) | SMALL.filter(bool)),
        "nonce": draw(SMALL),
        "gas": draw(SMALL),
        "maxFeePerGas": draw(UINT),
        "maxPriorityFeePerGas": draw(UINT),
        "value": draw(UINT),
        "data": "0x" + draw(st.binary(max_size=300)).hex(),
        "type": 2,
        "accessList": [],
    }
    address = to_checksum_address(draw(st.binary(min_size=20, max_size=20)))
    tx["to"] = draw(st.sampled_from([address, CONTRACT]))
    return tx


@settings(max_examples=60, deadline=None)
@given(tx=transactions())
def test_raw_transaction_equals_eth_accounts(tx: dict[str, Any]) -> None:
    signer = LocalSigner(_ONE_KEY)

    assert signer.sign_transaction(tx) == bytes(_ONE_KEY.sign_transaction(tx).raw_transaction)


def test_raw_transaction_equals_eth_accounts_for_several_keys() -> None:
    for _ in range(10):
        account = new_customer()
        tx: dict[str, Any] = {
            "chainId": 31337,
            "nonce": secrets.randbelow(1000),
            "gas": 100_000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "value": secrets.randbelow(10**18),
            "to": CONTRACT,
            "data": "0x" + secrets.token_hex(68),
        }
        expected = bytes(account.sign_transaction(tx).raw_transaction)
        assert LocalSigner(account).sign_transaction(tx) == expected


def test_contract_creation_equals_eth_accounts() -> None:
    tx: dict[str, Any] = {
        "chainId": 1337,
        "nonce": 0,
        "gas": 10**6,
        "maxFeePerGas": 2,
        "maxPriorityFeePerGas": 1,
        "data": "0x60",  # no "to": a deployment
    }

    assert LocalSigner(_ONE_KEY).sign_transaction(tx) == bytes(_ONE_KEY.sign_transaction(tx).raw_transaction)


BASE_TX: dict[str, Any] = {
    "chainId": 31337,
    "nonce": 0,
    "gas": 21_000,
    "maxFeePerGas": 2,
    "maxPriorityFeePerGas": 1,
    "value": 0,
    "to": CONTRACT,
    "data": "0x",
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"gasPrice": 1}, "gasPrice"),
        ({"type": 0}, "type"),
        ({"accessList": [{"address": CONTRACT, "storageKeys": []}]}, "access list"),
        ({"nonce": None}, "nonce"),
        ({"value": -1}, "value"),
        ({"gas": True}, "gas"),
        ({"to": CONTRACT[:-1] + "A"}, "checksum"),
        ({"to": CONTRACT.lower()}, "checksum"),
        ({"to": "0x1234"}, "to"),
        ({"data": "0xabc"}, "hex"),
        ({"data": 5}, "data"),
        ({"from": CONTRACT}, "from"),
    ],
)
def test_unsupported_transactions_are_refused(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(InvalidTransaction, match=complaint):
        LocalSigner(_ONE_KEY).sign_transaction(BASE_TX | change)


def test_missing_field_is_refused() -> None:
    tx = dict(BASE_TX)
    del tx["chainId"]

    with pytest.raises(InvalidTransaction, match="chainId"):
        LocalSigner(_ONE_KEY).sign_transaction(tx)


def test_signed_transaction_is_mined_and_recovers_to_the_signer(
    anvil: AnvilNode, funded_signer: LocalSigner
) -> None:
    tx = transfer(funded_signer, anvil.w3, anvil.accounts[11], value=12345)

    raw = funded_signer.sign_transaction(tx)

    assert Account.recover_transaction(raw) == funded_signer.address
    mined = mine_raw(anvil.w3, raw)
    assert mined["from"] == funded_signer.address
    assert mined["value"] == 12345 and mined["type"] == 2


def test_typed_data_equals_sign_redemption() -> None:
    customer = new_customer()
    data = redemption(31337, customer.address)
    message = data["message"]

    signature = LocalSigner(customer).sign_typed_data(data)

    assert len(signature) == 65 and signature[64] in (27, 28)
    assert signature == sign_redemption(
        customer,
        chain_id=31337,
        contract=CONTRACT,
        partner_id=message["partnerId"],
        amount=message["amount"],
        ref=message["reference"],
        nonce=message["nonce"],
        deadline=message["deadline"],
    )
    assert recover_typed(data, signature) == customer.address


def test_typed_data_equals_sign_cancellation_with_a_keyed_nonce() -> None:
    customer = new_customer()
    nonce = 7 << 64 | 3  # key 7 (a partner id), sequence 3: far beyond a JSON double
    data = cancellation_typed_data(chain_id=31337, contract=CONTRACT, customer=customer.address, nonce=nonce)

    signature = LocalSigner(customer).sign_typed_data(data)

    assert signature == sign_cancellation(customer, chain_id=31337, contract=CONTRACT, nonce=nonce)
    assert recover_typed(data, signature) == customer.address
    signable = encode_typed_data(full_message=data)
    assert typed_data_digest(data) == keccak(b"\x19" + signable.version + signable.header + signable.body)


def test_typed_data_with_an_explicit_domain_type_signs_the_same() -> None:
    customer = new_customer()
    data = redemption(1, customer.address)
    explicit = data | {
        "types": data["types"]
        | {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ]
        }
    }

    assert LocalSigner(customer).sign_typed_data(explicit) == LocalSigner(customer).sign_typed_data(data)


# --------------------------------------------------------------------------- dev keys


def test_dev_signers_are_anvils_accounts(anvil_node: AnvilNode) -> None:
    signers = dev_signers(anvil_node.w3.eth.chain_id)

    assert [s.address for s in signers] == anvil_node.accounts[:10]
    assert [s.address for s in dev_signers(31337, count=3)] == anvil_node.accounts[:3]


def test_dev_signers_on_eth_tester(eth_tester_node: EthTesterNode) -> None:
    chain_id = eth_tester_node.w3.eth.chain_id

    assert chain_id in LOCAL_CHAIN_IDS
    assert len(dev_signers(chain_id, count=2)) == 2


@pytest.mark.parametrize("chain_id", [1, 137, 10, 8453, 11155111])
def test_dev_signers_refused_off_local_chains(chain_id: int) -> None:
    with pytest.raises(DevKeyRefused, match=str(chain_id)):
        dev_signers(chain_id)
    with pytest.raises(DevKeyRefused, match=str(chain_id)):
        dev_account(chain_id, 0)


def test_dev_accounts_are_anvils_with_their_keys(anvil_node: AnvilNode) -> None:
    """The demo's members sign in with these (their keys are printed in dev mode): each is the anvil
    account of its index, and its key is that account's."""
    accounts = [dev_account(31337, i) for i in range(len(anvil_node.accounts))]
    assert [a.address for a in accounts] == anvil_node.accounts
    assert all(Account.from_key(a.key).address == a.address for a in accounts)
    assert [a.address for a in accounts[:10]] == [s.address for s in dev_signers(31337)]


def test_dev_signer_transaction_is_mined(anvil: AnvilNode) -> None:
    signer = dev_signers(31337, count=10)[9]

    mined = mine_raw(anvil.w3, signer.sign_transaction(transfer(signer, anvil.w3, anvil.accounts[0])))

    assert mined["from"] == signer.address


# --------------------------------------------------------------------------- remote signer (anvil signs)


def remote(anvil: AnvilNode, index: int = 10) -> JsonRpcSigner:
    url = anvil.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    return JsonRpcSigner(url, anvil.accounts[index], typed_data_method=ANVIL_TYPED_DATA, timeout=5)


def test_remote_signed_transaction_is_mined(anvil: AnvilNode) -> None:
    signer = remote(anvil)
    tx = transfer(signer, anvil.w3, anvil.accounts[0], value=777)
    assert isinstance(signer, Signer)

    raw = signer.sign_transaction(tx)

    # anvil signs with the same key and RFC 6979 nonce as the local dev signer would.
    assert raw == dev_signers(31337, count=11)[10].sign_transaction(tx)
    mined = mine_raw(anvil.w3, raw)
    assert mined["from"] == signer.address and mined["value"] == 777


def test_remote_typed_data_recovers_to_the_account(anvil: AnvilNode) -> None:
    signer = remote(anvil)
    data = redemption(31337, anvil.accounts[5], amount=2**200)  # beyond what a JSON double holds

    signature = signer.sign_typed_data(data)

    assert recover_typed(data, signature) == signer.address
    assert signature == dev_signers(31337, count=11)[10].sign_typed_data(data)


def test_remote_cancellation_with_a_keyed_nonce_recovers_to_the_account(anvil: AnvilNode) -> None:
    signer = remote(anvil)
    data = cancellation_typed_data(
        chain_id=31337, contract=CONTRACT, customer=signer.address, nonce=2**150 << 64 | 1
    )

    signature = signer.sign_typed_data(data)

    assert recover_typed(data, signature) == signer.address
    assert signature == dev_signers(31337, count=11)[10].sign_typed_data(data)


def test_remote_json_rpc_error_is_permanent(anvil: AnvilNode) -> None:
    url = anvil.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    stranger = JsonRpcSigner(url, new_customer().address, timeout=5)  # not an account anvil holds

    with pytest.raises(RemoteSignerError) as excinfo:
        stranger.sign_transaction(transfer(stranger, anvil.w3, anvil.accounts[0]))
    assert excinfo.value.code is not None and excinfo.value.remote_message


def test_unreachable_remote_signer_is_retryable() -> None:
    signer = JsonRpcSigner(f"http://127.0.0.1:{unused_port()}", CONTRACT, timeout=2)

    with pytest.raises(RetryableError):
        signer.sign_transaction(BASE_TX)
    with pytest.raises(RemoteSignerUnavailable):
        signer.sign_typed_data(redemption(31337, CONTRACT))


class _Reply:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        return self._body


class FakeSession:
    """Stands in for ``requests.Session``: answers every POST with one canned reply."""

    def __init__(self, status: int, body: Any) -> None:
        self.reply = _Reply(status, body)
        self.requests: list[dict[str, Any]] = []

    def post(self, url: str, *, json: Any, timeout: float) -> _Reply:
        self.requests.append(json)
        return self.reply


def test_remote_signature_by_another_key_is_rejected() -> None:
    honest, impostor = new_customer(), new_customer()
    data = redemption(31337, honest.address)
    forged = LocalSigner(impostor).sign_typed_data(data)
    session = FakeSession(200, {"jsonrpc": "2.0", "id": 1, "result": HexBytes(forged).to_0x_hex()})
    signer = JsonRpcSigner("http://signer.invalid", honest.address, session=session)  # type: ignore[arg-type]

    with pytest.raises(RemoteSignerError, match=impostor.address):
        signer.sign_typed_data(data)
    sent = session.requests[0]
    assert sent["method"] == "eth_signTypedData"
    assert sent["params"][0] == honest.address
    assert "EIP712Domain" in sent["params"][1]["types"]


@pytest.mark.parametrize(("status", "error"), [(503, RemoteSignerUnavailable), (403, RemoteSignerError)])
def test_remote_http_status_decides_retry(status: int, error: type[Exception]) -> None:
    session = FakeSession(status, {})
    signer = JsonRpcSigner("http://signer.invalid", CONTRACT, session=session)  # type: ignore[arg-type]

    with pytest.raises(error):
        signer.sign_transaction(BASE_TX)


def test_remote_url_password_is_redacted() -> None:
    signer = JsonRpcSigner(f"http://ops:hunter2@127.0.0.1:{unused_port()}", CONTRACT, timeout=2)

    with pytest.raises(RemoteSignerUnavailable) as excinfo:
        signer.sign_transaction(BASE_TX)
    assert_no_secret(describe(excinfo.value) + repr(signer), passwords=("hunter2",))


# --------------------------------------------------------------------------- nothing shows a key


def test_local_signer_shows_only_its_address() -> None:
    accounts: list[LocalAccount] = [new_customer() for _ in range(3)]
    dev = dev_signers(31337, count=10)
    pairs = [(LocalSigner(a), bytes(a.key)) for a in accounts] + [(s, dev_key(i)) for i, s in enumerate(dev)]

    for signer, key in pairs:
        assert repr(signer) == f"LocalSigner({signer.address})"
        assert str(signer) == signer.address
        assert_no_secret(repr(signer) + str(signer), key)
        assert not hasattr(signer, "__dict__")  # slots only: no LocalAccount kept around
        with pytest.raises(TypeError):
            pickle.dumps(signer)


def test_errors_show_no_key(keystore: Keystore) -> None:
    account = new_customer()
    key = bytes(account.key)
    address = keystore.import_key(key, PASSWORD)
    raised: list[BaseException] = []
    for attempt in (
        lambda: keystore.import_key(key, PASSWORD),
        lambda: keystore.load(address, "nope"),
        lambda: keystore.load(key.hex(), PASSWORD),
        lambda: keystore.import_key(key.hex()[:-2], PASSWORD),
        lambda: keystore.import_key(key.hex()[:-1] + "g", PASSWORD),
        lambda: LocalSigner(account).sign_transaction(BASE_TX | {"gas": -1}),
    ):
        with pytest.raises(SignerError) as excinfo:
            attempt()
        raised.append(excinfo.value)

    for error in raised:
        assert_no_secret(describe(error), key, passwords=(PASSWORD,))
