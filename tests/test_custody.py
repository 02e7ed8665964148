"""Custodial member wallets: BIP-32 derivation, the seed's keystore entry, and what must never leak.

The derivation is checked against the BIP-32 test vectors and against a known Ethereum result (anvil's
dev accounts are ``m/44'/60'/0'/0/i`` of the public "test ... junk" mnemonic), and cross-checked against
eth-account's independent HD implementation. The seed is stored and read back through a real
:class:`chain._signer.Keystore` in a temporary directory.
"""

from __future__ import annotations

import copy
import pickle
import secrets
import stat
import threading
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_typed_data

from api._custody import (
    ACCOUNT_PATH,
    MAX_MEMBER_INDEX,
    Custody,
    CustodyError,
    InvalidMemberIndex,
    InvalidSeed,
    KeystoreNotDedicated,
    SeedNotFound,
    _derive,
    custody_from_keystore,
)
from api._errors import ApiError
from chain._signer import Keystore, LocalSigner, WrongPassword

SMALL_SCRYPT_N = 2**10  # eth-account's standard is 2**18; small keeps the suite fast
PASSWORD = f"pw-{secrets.token_hex(12)}"  # generated for this run
DEV_MNEMONIC = "test test test test test test test test test test test junk"
H = 2**31  # hardened offset

# --------------------------------------------------------------------------- BIP-32 test vectors
# From BIP-32 itself (bitcoin/bips bip-0032.mediawiki, "Test Vectors"): (path, private key, chain code).

VECTOR_1_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
VECTOR_1 = [
    (
        [],
        "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35",
        "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508",
    ),
    (
        [0 + H],
        "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea",
        "47fdacbd0f1097043b78c63c20c34ef4ed9a111d980047ad16282c7ae6236141",
    ),
    (
        [0 + H, 1],
        "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368",
        "2a7857631386ba23dacac34180dd1983734e444fdbf774041578e9b6adb37c19",
    ),
    (
        [0 + H, 1, 2 + H],
        "cbce0d719ecf7431d88e6a89fa1483e02e35092af60c042b1df2ff59fa424dca",
        "04466b9cc8e161e966409ca52986c584f07e9dc81f735db683c3ff6ec7b1503f",
    ),
    (
        [0 + H, 1, 2 + H, 2],
        "0f479245fb19a38a1954c5c7c0ebab2f9bdfd96a17563ef28a6a4b1a2a764ef4",
        "cfb71883f01676f587d023cc53a35bc7f88f724b1f8c2892ac1275ac822a3edd",
    ),
    (
        [0 + H, 1, 2 + H, 2, 1_000_000_000],
        "471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8",
        "c783e67b921d2beb8f6b389cc646d7263b4145701dadd2161548a8b078e65e9e",
    ),
]

VECTOR_2_SEED = bytes.fromhex(
    "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a2"
    "9f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542"
)
VECTOR_2 = [
    (
        [],
        "4b03d6fc340455b363f51020ad3ecca4f0850280cf436c70c727923f6db46c3e",
        "60499f801b896d83179a4374aeb7822aaeaceaa0db1f85ee3e904c4defbd9689",
    ),
    (
        [0],
        "abe74a98f6c7eabee0428f53798f0ab8aa1bd37873999041703c742f15ac7e1e",
        "f0909affaa7ee7abe5dd4e100598d4dc53cd709d5a5c2cac40e7412f232f7c9c",
    ),
    (
        [0, 2_147_483_647 + H],
        "877c779ad9687164e9c2f4f0f4ff0340814392330693ce95a58fe18fd52e6e93",
        "be17a268474a6bb9c61e1d720cf6215e2a88c5406c4aee7b38547f585c9a37d9",
    ),
    (
        [0, 2_147_483_647 + H, 1],
        "704addf544a06e5ee4bea37098463c23613da32020d604506da8c0518e1da4b7",
        None,
    ),
]


@pytest.mark.parametrize(
    ("seed", "path", "key", "chain_code"),
    [(VECTOR_1_SEED, *row) for row in VECTOR_1] + [(VECTOR_2_SEED, *row) for row in VECTOR_2],
    ids=[f"vector1-depth{len(r[0])}" for r in VECTOR_1] + [f"vector2-depth{len(r[0])}" for r in VECTOR_2],
)
def test_derivation_matches_the_bip32_test_vectors(
    seed: bytes, path: list[int], key: str, chain_code: str | None
) -> None:
    derived_key, derived_chain_code = _derive(seed, path)
    assert derived_key.hex() == key
    if chain_code is not None:
        assert derived_chain_code.hex() == chain_code


# --------------------------------------------------------------------------- Ethereum addresses


def test_the_public_test_mnemonic_gives_anvils_dev_accounts() -> None:
    custody = Custody(seed_from_mnemonic(DEV_MNEMONIC, ""))
    assert ACCOUNT_PATH == "m/44'/60'/0'/0"
    assert custody.address_of(0) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert custody.address_of(1) == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert custody.address_of(2) == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert custody.signer_of(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.mark.parametrize("index", [0, 1, 7, 1_000_003, MAX_MEMBER_INDEX])
def test_keys_match_eth_accounts_own_hd_derivation(index: int) -> None:
    seed = secrets.token_bytes(64)
    custody = Custody(seed)
    expected = Account.from_key(key_from_seed(seed, f"{ACCOUNT_PATH}/{index}"))
    assert custody.address_of(index) == expected.address
    assert custody.signer_of(index).address == expected.address


def test_a_member_signer_is_a_chain_signer_whose_signatures_recover_to_the_member() -> None:
    custody = Custody.generate()
    signer = custody.signer_of(42)
    assert isinstance(signer, LocalSigner)
    assert signer.address == custody.address_of(42)
    message = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Consent": [{"name": "member", "type": "address"}, {"name": "nonce", "type": "uint256"}],
        },
        "primaryType": "Consent",
        "domain": {"name": "Loyalty", "chainId": 31337},
        "message": {"member": signer.address, "nonce": 1},
    }
    signature = signer.sign_typed_data(message)
    recovered = Account.recover_message(encode_typed_data(full_message=message), signature=signature)
    assert recovered == signer.address


def test_distinct_indices_give_distinct_addresses_and_the_same_index_the_same_one() -> None:
    custody = Custody.generate()
    addresses = [custody.address_of(i) for i in range(200)]
    assert len(set(addresses)) == 200
    assert all(a.startswith("0x") and len(a) == 42 for a in addresses)
    assert [custody.address_of(i) for i in range(200)] == addresses  # cached, and stable
    assert custody.address_of(MAX_MEMBER_INDEX) not in addresses


def test_distinct_seeds_give_distinct_wallets_and_the_same_seed_the_same_ones() -> None:
    seed = secrets.token_bytes(32)
    assert Custody(seed).address_of(3) == Custody(seed).address_of(3)
    assert Custody(seed).address_of(3) != Custody(secrets.token_bytes(32)).address_of(3)
    assert Custody.generate().address_of(0) != Custody.generate().address_of(0)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("index", [-1, MAX_MEMBER_INDEX + 1, 2**32, True, 1.0, "1", None])
def test_an_index_outside_the_non_hardened_range_is_refused(index: object) -> None:
    custody = Custody.generate()
    with pytest.raises(InvalidMemberIndex) as address_error:
        custody.address_of(index)  # type: ignore[arg-type]
    with pytest.raises(InvalidMemberIndex):
        custody.signer_of(index)  # type: ignore[arg-type]
    error = address_error.value
    assert error.index == index
    assert isinstance(error, CustodyError)
    assert isinstance(error, ApiError)
    assert isinstance(error, ValueError)
    assert error.status == 500  # a programming error, never the client's


@pytest.mark.parametrize("seed", [b"", b"\x01" * 15, b"\x01" * 65, "00" * 32, 12345])
def test_a_seed_of_the_wrong_size_or_type_is_refused_without_echoing_it(seed: object) -> None:
    with pytest.raises(InvalidSeed) as caught:
        Custody(seed)  # type: ignore[arg-type]
    assert isinstance(caught.value, CustodyError)
    assert isinstance(caught.value, ValueError)
    if isinstance(seed, bytes) and seed:
        assert seed.hex() not in str(caught.value)


def test_seeds_of_16_to_64_bytes_are_accepted() -> None:
    assert Custody(b"\x07" * 16).address_of(0) != Custody(b"\x07" * 64).address_of(0)


# --------------------------------------------------------------------------- no leaks


def test_neither_a_custody_nor_its_signers_show_the_seed_or_a_key() -> None:
    seed = secrets.token_bytes(32)
    custody = Custody(seed)
    signer = custody.signer_of(5)
    account_key, account_chain = _derive(seed, [44 + H, 60 + H, 0 + H, 0])
    member_key, _ = _derive(seed, [44 + H, 60 + H, 0 + H, 0, 5])
    shown = " ".join([repr(custody), str(custody), repr(signer), str(signer), f"{custody!r} {signer}"])
    for secret in (seed, account_key, account_chain, member_key):
        spellings = (secret.hex(), secret.hex().upper(), repr(secret), str(int.from_bytes(secret, "big")))
        for spelling in spellings:
            assert spelling not in shown
    assert "seed" not in " ".join(dir(custody)).lower()
    assert not hasattr(custody, "__dict__")  # slots only: nothing readable by name in vars()


def test_a_custody_is_neither_picklable_nor_copyable() -> None:
    custody = Custody.generate()
    with pytest.raises(TypeError):
        pickle.dumps(custody)
    with pytest.raises(TypeError):
        copy.copy(custody)
    with pytest.raises(TypeError):
        copy.deepcopy(custody)


# --------------------------------------------------------------------------- the keystore entry


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keystore" / "custody", scrypt_n=SMALL_SCRYPT_N)


def test_the_seed_is_created_once_and_read_back_the_same(keystore: Keystore) -> None:
    with pytest.raises(SeedNotFound):
        custody_from_keystore(keystore, PASSWORD)
    created = custody_from_keystore(keystore, PASSWORD, create=True)
    assert len(keystore.addresses()) == 1
    reloaded = custody_from_keystore(Keystore(keystore.directory), PASSWORD)  # as a restarted replica
    again = custody_from_keystore(keystore, PASSWORD, create=True)  # create only when there is none
    assert len(keystore.addresses()) == 1
    for index in (0, 1, 99, MAX_MEMBER_INDEX):
        assert reloaded.address_of(index) == created.address_of(index) == again.address_of(index)


def test_the_seed_entry_is_an_encrypted_private_keystore_file(keystore: Keystore) -> None:
    custody_from_keystore(keystore, PASSWORD, create=True)
    (address,) = keystore.addresses()
    seed = keystore.load(address, PASSWORD)._key.secret
    files = [p for p in keystore.directory.iterdir() if not p.name.startswith(".")]
    assert len(files) == 1
    assert stat.S_IMODE(keystore.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    text = files[0].read_text()
    assert '"kdf": "scrypt"' in text
    assert seed.hex() not in text.lower()
    # the entry is the seed: the same custody follows from the decrypted bytes
    assert custody_from_keystore(keystore, PASSWORD).address_of(8) == Custody(seed).address_of(8)


def test_an_existing_seed_can_be_imported(keystore: Keystore) -> None:
    seed = secrets.token_bytes(32)
    keystore.import_key(seed, PASSWORD)
    assert custody_from_keystore(keystore, PASSWORD).address_of(4) == Custody(seed).address_of(4)


def test_a_wrong_password_is_the_keystores_typed_error(keystore: Keystore) -> None:
    custody_from_keystore(keystore, PASSWORD, create=True)
    with pytest.raises(WrongPassword) as caught:
        custody_from_keystore(keystore, "not-" + PASSWORD)
    assert PASSWORD not in str(caught.value)


def test_a_directory_shared_with_other_keys_is_refused(keystore: Keystore) -> None:
    custody_from_keystore(keystore, PASSWORD, create=True)
    keystore.create(PASSWORD)  # say, the transaction signer's key
    for create in (False, True):
        with pytest.raises(KeystoreNotDedicated):
            custody_from_keystore(keystore, PASSWORD, create=create)
    assert len(keystore.addresses()) == 2  # nothing was added


def test_replicas_starting_together_end_up_with_one_seed(keystore: Keystore) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            results.append(custody_from_keystore(keystore, PASSWORD, create=True).address_of(0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keystore.addresses()) == 1
    assert len(results) == 4 and len(set(results)) == 1
