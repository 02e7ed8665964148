"""Signers: the only objects in the project that hold or reach a private key.

Everything that sends a transaction or signs an EIP-712 message takes a :class:`Signer`. Three ship here:

- :class:`LocalSigner`: the key is in this process (loaded from a :class:`Keystore`, or a dev key from
  :func:`dev_signers`). Signs EIP-1559 transactions directly with libsecp256k1 (coincurve), fast enough
  for bulk issuance.
- :class:`JsonRpcSigner`: the key stays in a remote signer that speaks the eth1 JSON-RPC signing methods
  (Consensys Web3Signer's ``eth_signTransaction`` / ``eth_signTypedData``; anvil's dev accounts in tests).
- Anything else that implements the :class:`Signer` protocol. To plug in a cloud KMS or an HSM, write a
  class with an ``address`` and the two ``sign_*`` methods: build the EIP-1559 signing payload
  (``0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value, data, []])``),
  have the KMS sign its keccak-256 digest, normalise ``s`` to the lower half of the curve order, find the
  recovery id by trying both and comparing with ``address``, and return the signed envelope. Nothing
  else in the project needs to change.

Errors (see ``chain._errors`` for the rest of the tree)::

    PermanentError
    └── SignerError                 a signer cannot do what was asked; retrying will not help
        ├── KeystoreError           a key file cannot be written, read or decrypted
        │   ├── KeyNotFound         no key file for that address
        │   ├── KeyExists           a key file for that address is already there
        │   ├── WrongPassword       the password does not decrypt the key file
        │   ├── InvalidKey          the bytes given are not a secp256k1 private key
        │   └── PasswordError       no usable password (none given, file missing or empty)
        ├── DevKeyRefused           the public dev keys were asked for on a non-local chain
        ├── InvalidTransaction      the transaction dict is not one this signer can sign
        └── RemoteSignerError       a remote signer answered with an error or with nonsense
    RetryableError
    └── RemoteSignerUnavailable     the remote signer could not be reached, or timed out

No error message, ``repr`` or ``str`` in this module contains a private key or a password.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import coincurve
import requests
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from hexbytes import HexBytes

from ._errors import PermanentError, RetryableError

__all__ = [
    "LOCAL_CHAIN_IDS",
    "DevKeyRefused",
    "InvalidKey",
    "InvalidTransaction",
    "JsonRpcSigner",
    "KeyExists",
    "KeyNotFound",
    "Keystore",
    "KeystoreError",
    "LocalSigner",
    "PasswordError",
    "RemoteSignerError",
    "RemoteSignerUnavailable",
    "Signer",
    "SignerError",
    "WrongPassword",
    "dev_account",
    "dev_signers",
    "read_password",
]


# --------------------------------------------------------------------------- errors


class SignerError(PermanentError):
    """Root of the signers' permanent errors: the request cannot succeed as it stands."""


class KeystoreError(SignerError):
    """A key file cannot be written, read or decrypted."""


class KeyNotFound(KeystoreError):
    """The keystore holds no key for the address asked for."""


class KeyExists(KeystoreError):
    """The keystore already holds a key for that address (importing it twice is refused)."""


class WrongPassword(KeystoreError):
    """The password does not decrypt the key file (its MAC does not match)."""


class InvalidKey(KeystoreError):
    """The value given is not a secp256k1 private key (the message never repeats the value)."""


class PasswordError(KeystoreError):
    """No usable password: neither a file nor a value given, or the file is missing, unreadable or empty."""


class DevKeyRefused(SignerError):
    """The well-known dev keys were asked for on a chain that is not a local development chain."""


class InvalidTransaction(SignerError):
    """The transaction dict is not an EIP-1559 transaction this signer can sign."""


class RemoteSignerError(SignerError):
    """The remote signer answered with a JSON-RPC error (``code``, ``remote_message``) or a bad reply."""

    def __init__(self, message: str, *, code: int | None = None, remote_message: str | None = None) -> None:
        self.code = code
        self.remote_message = remote_message
        super().__init__(message)


class RemoteSignerUnavailable(RetryableError):
    """The remote signer could not be reached, timed out, or said it is temporarily unavailable."""


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class Signer(Protocol):
    """Signs transactions and EIP-712 messages for one account."""

    @property
    def address(self) -> ChecksumAddress: ...

    def sign_transaction(self, transaction: Mapping[str, Any]) -> bytes:
        """The raw signed transaction (what ``eth_sendRawTransaction`` takes) for an EIP-1559 dict with
        integer fields ``chainId, nonce, gas, maxFeePerGas, maxPriorityFeePerGas, value`` and hex
        ``to, data``."""
        ...

    def sign_typed_data(self, full_message: Mapping[str, Any]) -> bytes:
        """The 65-byte signature (``r || s || v``, v = 27/28) of an EIP-712 message
        (``domain``, ``types``, ``primaryType``, ``message``)."""
        ...


# --------------------------------------------------------------------------- EIP-1559 encoding

_UINT256_LIMIT = 2**256
_REQUIRED_INT_FIELDS = ("chainId", "nonce", "gas", "maxFeePerGas", "maxPriorityFeePerGas")
_ALLOWED_FIELDS = frozenset({*_REQUIRED_INT_FIELDS, "value", "to", "data", "type", "accessList", "from"})


def _rlp_length_prefix(length: int, short_offset: int) -> bytes:
    if length < 56:
        return bytes((short_offset + length,))
    encoded_length = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((short_offset + 55 + len(encoded_length),)) + encoded_length


def _rlp_bytes(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _rlp_length_prefix(len(value), 0x80) + value


def _rlp_list(encoded_items: bytes) -> bytes:
    return _rlp_length_prefix(len(encoded_items), 0xC0) + encoded_items


def _rlp_uint(name: str, value: Any) -> bytes:
    if type(value) is not int or not 0 <= value < _UINT256_LIMIT:
        raise InvalidTransaction(f"{name} must be an integer in [0, 2**256), got {type(value).__name__}")
    return _rlp_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@lru_cache(maxsize=1024)
def _address_bytes(to: str) -> bytes:
    # Cached: a bulk run sends to the same contract again and again.
    if not is_address(to) or not to.startswith("0x"):
        raise InvalidTransaction(f"to is not a 0x-prefixed address: {to!r}")
    if to != to_checksum_address(to):  # as eth-account: a typo'd recipient must not slip through
        raise InvalidTransaction(f"to is not an EIP-55 checksummed address: {to}")
    return bytes.fromhex(to[2:])


def _to_field(to: Any) -> bytes:
    if to is None or to == "" or to == b"":
        return b""  # contract creation
    if isinstance(to, str):
        return _address_bytes(to)
    if isinstance(to, bytes) and len(to) == 20:
        return bytes(to)
    raise InvalidTransaction(f"to must be a hex address, got {type(to).__name__}")


def _data_field(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and data.startswith(("0x", "0X")):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            raise InvalidTransaction("data is not valid hex") from None
    raise InvalidTransaction(f"data must be 0x-prefixed hex or bytes, got {type(data).__name__}")


def _unsigned_fields(transaction: Mapping[str, Any], sender: ChecksumAddress) -> bytes:
    """The RLP-encoded fields of the EIP-1559 signing payload, concatenated (without the list header)."""
    extra = transaction.keys() - _ALLOWED_FIELDS
    if extra:
        raise InvalidTransaction(f"unsupported transaction fields {sorted(extra)}: only EIP-1559 is signed")
    kind = transaction.get("type", 2)
    if kind not in (2, "0x2", "0x02"):
        raise InvalidTransaction(f"only type 2 (EIP-1559) transactions are signed, got type {kind!r}")
    if transaction.get("accessList"):
        raise InvalidTransaction("non-empty access lists are not supported")
    claimed = transaction.get("from")
    if claimed is not None and str(claimed).lower() != sender.lower():
        raise InvalidTransaction(f"from is {claimed}, but this signer is {sender}")
    try:
        chain_id, nonce, gas, max_fee, priority_fee = (transaction[f] for f in _REQUIRED_INT_FIELDS)
    except KeyError as exc:
        raise InvalidTransaction(f"missing transaction field {exc.args[0]!r}") from None
    return b"".join(
        (
            _rlp_uint("chainId", chain_id),
            _rlp_uint("nonce", nonce),
            _rlp_uint("maxPriorityFeePerGas", priority_fee),
            _rlp_uint("maxFeePerGas", max_fee),
            _rlp_uint("gas", gas),
            _rlp_bytes(_to_field(transaction.get("to"))),
            _rlp_uint("value", transaction.get("value", 0)),
            _rlp_bytes(_data_field(transaction.get("data", b""))),
            b"\xc0",  # empty access list
        )
    )


# --------------------------------------------------------------------------- EIP-712

#: The EIP712Domain fields in the order eth-account (and every wallet) lays them out.
_DOMAIN_FIELDS = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)
_JSON_SAFE_INT = 2**53 - 1


def _typed_data_digest(full_message: Mapping[str, Any]) -> bytes:
    """The EIP-712 digest ``keccak(0x1901 || domainSeparator || hashStruct(message))``.

    eth-account accepts ``types`` with or without an ``EIP712Domain`` entry (``redemption_typed_data``
    leaves it out); without one, the domain's type is derived from the keys of ``domain``.
    """
    signable = encode_typed_data(full_message=dict(full_message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def _with_domain_type(full_message: Mapping[str, Any]) -> dict[str, Any]:
    """The message with ``types.EIP712Domain`` derived from ``domain`` if absent (remote signers need it)."""
    message = dict(full_message)
    types = dict(message["types"])
    if "EIP712Domain" not in types:
        domain = message["domain"]
        types["EIP712Domain"] = [{"name": n, "type": t} for n, t in _DOMAIN_FIELDS if n in domain]
    message["types"] = types
    return message


def _jsonable(value: Any) -> Any:
    """``value`` with bytes as 0x-hex, integers beyond 2**53 as decimal strings (JSON parsers lose them)."""
    if isinstance(value, bytes | bytearray):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > _JSON_SAFE_INT else value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- local keys

_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class LocalSigner:
    """A key held in this process (loaded from a keystore, or a dev key).

    The key is kept only as a libsecp256k1 key object in a private slot; ``repr``/``str`` show the
    address alone. Transactions are encoded and signed here directly (RLP + keccak + RFC 6979 ECDSA),
    which gives byte-for-byte the same raw transaction as ``Account.sign_transaction`` many times faster.
    """

    __slots__ = ("_address", "_key")

    def __init__(self, account: LocalAccount) -> None:
        self._key = coincurve.PrivateKey(bytes(account.key))
        self._address: ChecksumAddress = account.address

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    def sign_transaction(self, transaction: Mapping[str, Any]) -> bytes:
        fields = _unsigned_fields(transaction, self._address)
        digest = keccak(b"\x02" + _rlp_list(fields))
        signature = self._key.sign_recoverable(digest, hasher=None)
        r = signature[0:32].lstrip(b"\x00")
        s = signature[32:64].lstrip(b"\x00")
        y_parity = b"\x80" if signature[64] == 0 else b"\x01"
        return b"\x02" + _rlp_list(fields + y_parity + _rlp_bytes(r) + _rlp_bytes(s))

    def sign_typed_data(self, full_message: Mapping[str, Any]) -> bytes:
        signature = self._key.sign_recoverable(_typed_data_digest(full_message), hasher=None)
        return signature[:64] + bytes((27 + signature[64],))

    def __repr__(self) -> str:
        return f"LocalSigner({self._address})"

    def __str__(self) -> str:
        return self._address

    def __reduce__(self) -> Any:
        raise TypeError("a LocalSigner holds a private key and is not picklable")


def _parse_private_key(private_key: str | bytes) -> bytes:
    """32 key bytes from hex (with or without 0x) or raw bytes; :class:`InvalidKey` otherwise."""
    if isinstance(private_key, str):
        text = private_key.strip()
        text = text[2:] if text[:2] in ("0x", "0X") else text
        if len(text) != 64:
            raise InvalidKey("a private key is 64 hex digits (32 bytes)")
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise InvalidKey("a private key is 64 hex digits (32 bytes)") from None
    elif isinstance(private_key, bytes | bytearray):
        key = bytes(private_key)
        if len(key) != 32:
            raise InvalidKey("a private key is 32 bytes")
    else:
        raise InvalidKey(f"a private key is hex text or bytes, not {type(private_key).__name__}")
    if not 0 < int.from_bytes(key, "big") < _SECP256K1_ORDER:
        raise InvalidKey("the value is outside the secp256k1 private key range")
    return key


# --------------------------------------------------------------------------- keystore


class Keystore:
    """Web3 Secret Storage (v3) key files in one directory, the same format geth and clef use.

    Files are named like geth's (``UTC--<time>--<address>``), written atomically with mode ``0o600``
    in a directory created ``0o700``. Key files copied in under other names are found too: lookups read
    the ``address`` field of every non-hidden file, without decrypting anything.

    ``scrypt_n`` is the scrypt work factor of new files (``None``: eth-account's standard, 2**18);
    tests pass a small one. Existing files carry their own parameters.
    """

    def __init__(self, directory: Path, *, scrypt_n: int | None = None) -> None:
        self.directory = Path(directory)
        self._scrypt_n = scrypt_n

    def __repr__(self) -> str:
        return f"Keystore({str(self.directory)!r})"

    def create(self, password: str) -> ChecksumAddress:
        """Generates a new random key, stores it encrypted with ``password``, and returns its address."""
        while True:
            key = secrets.token_bytes(32)
            if 0 < int.from_bytes(key, "big") < _SECP256K1_ORDER:
                return self._store(key, password)

    def import_key(self, private_key: str | bytes, password: str) -> ChecksumAddress:
        """Stores an existing key (hex or 32 bytes) encrypted with ``password``; returns its address."""
        return self._store(_parse_private_key(private_key), password)

    def addresses(self) -> list[ChecksumAddress]:
        """The addresses of the keys stored here, in file-name order (creation order for geth names)."""
        return [address for address, _ in self._files()]

    def load(self, address: str, password: str) -> LocalSigner:
        """Decrypts the key of ``address`` with ``password``."""
        path = self._path_of(address)
        keyfile = self._read(path)
        try:
            key = Account.decrypt(keyfile, password)
        except ValueError as exc:
            if "MAC mismatch" in str(exc):
                owner = self._address_in(path, keyfile)
                raise WrongPassword(f"wrong password for the key of {owner}") from None
            raise KeystoreError(f"{path.name} cannot be decrypted ({type(exc).__name__})") from None
        except (KeyError, TypeError, NotImplementedError) as exc:
            raise KeystoreError(f"{path.name} cannot be decrypted ({type(exc).__name__})") from None
        signer = LocalSigner(Account.from_key(key))
        if signer.address != self._address_in(path, keyfile):
            raise KeystoreError(f"{path.name} decrypts to a key of another address than it names")
        return signer

    # -- internals

    def _store(self, key: bytes, password: str) -> ChecksumAddress:
        if not password:
            raise PasswordError("refusing to encrypt a key with an empty password")
        account = Account.from_key(key)
        address: ChecksumAddress = account.address
        if address in self.addresses():
            raise KeyExists(f"the keystore already holds a key for {address}")
        keyfile = Account.encrypt(key, password, kdf="scrypt", iterations=self._scrypt_n)
        self._ensure_directory()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
        path = self.directory / f"UTC--{stamp}--{address[2:].lower()}"
        tmp = self.directory / f".{path.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(keyfile, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return address

    def _ensure_directory(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
            self.directory.chmod(0o700)  # mkdir's mode is filtered by the umask

    def _files(self) -> list[tuple[ChecksumAddress, Path]]:
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            out.append((self._address_in(path, self._read(path)), path))
        return out

    def _path_of(self, address: str) -> Path:
        if not isinstance(address, str) or not is_address(address):
            raise KeyNotFound("not an address; keys are looked up by their 0x address")
        wanted = to_checksum_address(address)
        for found, path in self._files():
            if found == wanted:
                return path
        raise KeyNotFound(f"no key for {wanted} in {self.directory}")

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            keyfile = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeystoreError(f"{path.name} is not a readable key file ({type(exc).__name__})") from None
        if not isinstance(keyfile, dict):
            raise KeystoreError(f"{path.name} is not a key file")
        return keyfile

    @staticmethod
    def _address_in(path: Path, keyfile: Mapping[str, Any]) -> ChecksumAddress:
        raw = keyfile.get("address")
        if not isinstance(raw, str):
            raise KeystoreError(f"{path.name} has no address field")
        candidate = raw if raw.startswith("0x") else "0x" + raw
        if not is_address(candidate):
            raise KeystoreError(f"{path.name} has a malformed address field")
        return to_checksum_address(candidate)


def read_password(*, file: Path | None, value: str | None) -> str:
    """The keystore password from ``file`` (one trailing newline dropped) or ``value``, exactly one of them.

    The caller (``Settings``) decides where they come from; this module never reads the environment.
    """
    if file is not None and value is not None:
        raise PasswordError("give a password file or a password, not both")
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordError(f"cannot read the password file {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PasswordError(f"the password file {file} is not UTF-8 text") from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise PasswordError(f"the password file {file} is empty")
        return text
    if value is not None:
        if not value:
            raise PasswordError("the password is empty")
        return value
    raise PasswordError("no password given (neither a password file nor a value)")


# --------------------------------------------------------------------------- dev keys

#: Chain ids of local development chains: anvil/hardhat, ganache/geth --dev, eth-tester (py-evm).
LOCAL_CHAIN_IDS = frozenset({31337, 1337, 131277322940537})

#: The public mnemonic of anvil's and hardhat's funded dev accounts. Anyone can spend from them.
_DEV_MNEMONIC = "test test test test test test test test test test test junk"


@cache
def _dev_account(index: int) -> LocalAccount:
    # eth-account's HD derivation without the process-wide "unaudited" switch of Account.from_mnemonic.
    key = key_from_seed(seed_from_mnemonic(_DEV_MNEMONIC, ""), f"m/44'/60'/0'/0/{index}")
    account: LocalAccount = Account.from_key(key)
    return account


@cache
def _dev_signer(index: int) -> LocalSigner:
    return LocalSigner(_dev_account(index))


def _check_local(chain_id: int) -> None:
    if chain_id not in LOCAL_CHAIN_IDS:
        local = sorted(LOCAL_CHAIN_IDS)
        raise DevKeyRefused(f"dev keys are public; refused on chain id {chain_id} (local chains: {local})")


def dev_account(chain_id: int, index: int) -> LocalAccount:
    """Anvil's dev account ``index`` with its key at hand (a demo member who signs in with it, say: the
    key is public). Refused with :class:`DevKeyRefused` unless ``chain_id`` is a local chain's."""
    _check_local(chain_id)
    if index < 0:
        raise ValueError("index must not be negative")
    return _dev_account(index)


def dev_signers(chain_id: int, count: int = 10) -> list[LocalSigner]:
    """Anvil's first ``count`` dev accounts (``m/44'/60'/0'/0/i`` of the public test mnemonic).

    Refused with :class:`DevKeyRefused` unless ``chain_id`` is in :data:`LOCAL_CHAIN_IDS`: these keys
    are public, so anything they sign on a real chain can be stolen.
    """
    _check_local(chain_id)
    if count < 0:
        raise ValueError("count must not be negative")
    return [_dev_signer(i) for i in range(count)]


# --------------------------------------------------------------------------- remote signer

_RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def _redact(url: str) -> str:
    """``url`` without any password in its user-info part (safe for messages and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _hex_quantity(name: str, value: Any) -> str:
    if type(value) is not int or value < 0:
        raise InvalidTransaction(f"{name} must be a non-negative integer, got {type(value).__name__}")
    return hex(value)


class JsonRpcSigner:
    """A key kept by a remote signer that speaks the eth1 JSON-RPC signing methods.

    Made for Consensys Web3Signer's eth1 mode (``eth_signTransaction`` returns the raw signed transaction,
    ``eth_signTypedData`` takes ``[address, typedData]``); the same calls reach the unlocked dev accounts of
    anvil, whose typed-data method is ``eth_signTypedData_v4`` (pass it as ``typed_data_method``).

    Every answer is checked: the signed transaction and the typed-data signature must recover to
    ``address``, or :class:`RemoteSignerError` is raised. Unreachable signer, timeouts and HTTP
    408/429/5xx raise :class:`RemoteSignerUnavailable` (a ``RetryableError``); JSON-RPC errors and
    malformed replies raise :class:`RemoteSignerError`.

    A cloud KMS that has no such endpoint is plugged in as its own class implementing :class:`Signer`
    (see this module's docstring), not through this one.
    """

    def __init__(
        self,
        url: str,
        address: str,
        *,
        typed_data_method: str = "eth_signTypedData",
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self._address = to_checksum_address(address)
        self._typed_data_method = typed_data_method
        self._timeout = timeout
        self._session = session
        self._ids = itertools.count(1)

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    def __repr__(self) -> str:
        return f"JsonRpcSigner({_redact(self._url)!r}, {self._address})"

    def sign_transaction(self, transaction: Mapping[str, Any]) -> bytes:
        # Validates the dict exactly as LocalSigner does, then sends it as JSON-RPC quantities.
        _unsigned_fields(transaction, self._address)
        params: dict[str, Any] = {
            "from": self._address,
            "type": "0x2",
            **{name: _hex_quantity(name, transaction[name]) for name in _REQUIRED_INT_FIELDS},
            "value": _hex_quantity("value", transaction.get("value", 0)),
            "data": HexBytes(_data_field(transaction.get("data", b""))).to_0x_hex(),
        }
        to = _to_field(transaction.get("to"))
        if to:
            params["to"] = to_checksum_address(to)
        raw = self._hex_result(self._call("eth_signTransaction", [params]), "eth_signTransaction")
        try:
            sender = Account.recover_transaction(raw)
        except Exception as exc:  # any decoding failure means the reply is not a signed transaction
            raise RemoteSignerError(
                f"eth_signTransaction returned no valid signed transaction ({type(exc).__name__})"
            ) from None
        if sender != self._address:
            raise RemoteSignerError(f"eth_signTransaction signed as {sender}, expected {self._address}")
        return raw

    def sign_typed_data(self, full_message: Mapping[str, Any]) -> bytes:
        digest = _typed_data_digest(full_message)  # also validates the message before it leaves
        payload = _jsonable(_with_domain_type(full_message))
        method = self._typed_data_method
        signature = self._hex_result(self._call(method, [self._address, payload]), method)
        if len(signature) != 65:
            raise RemoteSignerError(f"{method} returned {len(signature)} bytes, expected a 65-byte signature")
        v = signature[64] - 27 if signature[64] >= 27 else signature[64]
        try:
            public_key = coincurve.PublicKey.from_signature_and_message(
                signature[:64] + bytes((v,)), digest, hasher=None
            )
        except Exception as exc:  # libsecp256k1 rejects the signature
            raise RemoteSignerError(f"{method} returned an invalid signature: {exc}") from None
        signer = to_checksum_address(keccak(public_key.format(compressed=False)[1:])[-20:])
        if signer != self._address:
            raise RemoteSignerError(f"{method} signed as {signer}, expected {self._address}")
        return signature[:64] + bytes((27 + v,))

    # -- internals

    def _call(self, method: str, params: Sequence[Any]) -> Any:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": list(params),
        }
        where = _redact(self._url)
        try:
            if self._session is not None:
                response = self._session.post(self._url, json=body, timeout=self._timeout)
            else:
                response = requests.post(self._url, json=body, timeout=self._timeout)
        except requests.exceptions.SSLError as exc:
            raise RemoteSignerError(f"TLS failure with the signer at {where}: {type(exc).__name__}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RemoteSignerUnavailable(f"signer at {where} unreachable: {type(exc).__name__}") from None
        if response.status_code in _RETRYABLE_HTTP:
            raise RemoteSignerUnavailable(f"signer at {where} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise RemoteSignerError(f"signer at {where} answered HTTP {response.status_code} to {method}")
        try:
            reply = response.json()
        except ValueError:
            raise RemoteSignerError(f"signer at {where} answered {method} with something not JSON") from None
        if not isinstance(reply, dict):
            raise RemoteSignerError(f"signer at {where} answered {method} with a malformed JSON-RPC reply")
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            raise RemoteSignerError(
                f"{method} failed on the signer at {where}: {message} (code {code})",
                code=code if isinstance(code, int) else None,
                remote_message=message,
            )
        if "result" not in reply:
            raise RemoteSignerError(f"signer at {where} answered {method} without a result")
        return reply["result"]

    @staticmethod
    def _hex_result(result: Any, method: str) -> bytes:
        if not isinstance(result, str) or not result.startswith("0x"):
            raise RemoteSignerError(f"{method} returned {type(result).__name__}, expected 0x-hex")
        try:
            return bytes.fromhex(result[2:])
        except ValueError:
            raise RemoteSignerError(f"{method} returned malformed hex") from None
