"""Custodial member wallets: one key per member, derived from one seed the service keeps encrypted.

A member who brings no wallet of their own is given a custodial address: the service derives a key for
them and signs their consents with it. Every such key comes from one **custody seed** by BIP-32 private
derivation along the BIP-44 Ethereum path ``m/44'/60'/0'/0/<index>``: the account levels are hardened, the
member's ``index`` (``0 <= index < 2**31``, allocated by the members table) is the last, non-hardened
level. So the seed is the only secret to back up; any replica with the same seed derives the same
addresses, and the keys match what wallets (MetaMask, ``Account.from_mnemonic``) derive from the same
seed, which makes a later hand-over of the keys to their owners possible.

Derivation is a few lines of libsecp256k1 (coincurve) rather than eth-account's ``hdaccount`` helpers: the
account node ``m/44'/60'/0'/0`` is derived once when a :class:`Custody` is made and kept, so each member's
key costs one HMAC-SHA512 and one scalar addition; and the BIP-32 test vectors check it in
``tests/test_custody.py`` (:func:`_derive` is exposed for that).

**Where the seed lives.** The project's :class:`chain._signer.Keystore` stores secp256k1 private keys in
Web3 Secret Storage files encrypted with scrypt. A 32-byte custody seed is stored there as one such
"key" (BIP-32 accepts any 16-64 byte seed, and a random 32-byte value is a valid private key but for a
2**-128 chance that ``Keystore.create`` already rejects). The entry is named, as every keystore file is,
by the address of that key; nothing ever signs with it. To tell the seed apart from the transaction
signer's key without a naming convention, the custody seed has **a keystore directory of its own**
(``<keystore_dir>/custody`` by convention): :func:`custody_from_keystore` refuses a directory holding
more than one key, so the signer's key can never be taken for the seed by mistake. ``create=True``
makes the seed on first start; concurrent starts are serialised by a lock file in that directory, so two
replicas can never come up with different seeds.

Nothing here keeps the seed itself: a :class:`Custody` holds only the account node (a libsecp256k1 key
object and a chain code) in private slots, shows no key material in ``repr``/``str``, and refuses to be
pickled or copied, as :class:`chain._signer.LocalSigner` does.

Errors (all :class:`api._errors.ApiError`, rendered as a 500 if one ever reaches a request: they are
configuration or programming errors, never the client's)::

    CustodyError                  custody wallets cannot do what was asked
    ├── InvalidSeed               the seed is not 16 to 64 bytes (ValueError too)
    ├── InvalidMemberIndex        an index outside [0, 2**31) (ValueError too); ``index``
    ├── SeedNotFound              the keystore directory holds no seed and ``create`` was not asked
    └── KeystoreNotDedicated      the keystore directory holds more than one key

Keystore failures (wrong password, unreadable file) are the chain layer's typed
:class:`chain._signer.KeystoreError` and pass through unchanged.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import coincurve
from eth_account import Account
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from chain._signer import Keystore, LocalSigner

from ._errors import ApiError

__all__ = [
    "ACCOUNT_PATH",
    "MAX_MEMBER_INDEX",
    "Custody",
    "CustodyError",
    "InvalidMemberIndex",
    "InvalidSeed",
    "KeystoreNotDedicated",
    "SeedNotFound",
    "custody_from_keystore",
]

#: The BIP-32 path of the account node; a member's key is its child ``<index>``.
ACCOUNT_PATH = "m/44'/60'/0'/0"
#: The largest member index: the last level is non-hardened, so indices are below 2**31.
MAX_MEMBER_INDEX = 2**31 - 1

_HARDENED = 0x8000_0000
_ACCOUNT_LEVELS = (44 | _HARDENED, 60 | _HARDENED, 0 | _HARDENED, 0)
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_LOCK_FILE = ".custody.lock"  # hidden: the Keystore skips dot-files when it lists keys
_ADDRESS_CACHE_SIZE = 65_536


# --------------------------------------------------------------------------- errors


class CustodyError(ApiError):
    """Root of the custody errors: a configuration or programming error, not the client's."""


class InvalidSeed(CustodyError, ValueError):
    """The custody seed is not 16 to 64 bytes (the message never shows it)."""


class InvalidMemberIndex(CustodyError, ValueError):
    """A member index outside ``[0, 2**31)``; ``index`` is the value given."""

    def __init__(self, index: object) -> None:
        super().__init__(f"a member index is an integer in [0, {MAX_MEMBER_INDEX}], got {index!r}")
        self.index = index


class SeedNotFound(CustodyError):
    """The keystore directory holds no custody seed and creating one was not asked for."""


class KeystoreNotDedicated(CustodyError):
    """The keystore directory holds more than one key: the custody seed needs a directory of its own."""


# --------------------------------------------------------------------------- BIP-32


def _ser32(index: int) -> bytes:
    return index.to_bytes(4, "big")


def _master(seed: bytes) -> tuple[coincurve.PrivateKey, bytes]:
    """BIP-32's master node of ``seed``: ``HMAC-SHA512(key="Bitcoin seed", seed)``, as key and chain code."""
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    if not 0 < int.from_bytes(digest[:32], "big") < _SECP256K1_ORDER:  # probability below 2**-127
        raise InvalidSeed("this seed gives an invalid BIP-32 master key; use another seed")
    return coincurve.PrivateKey(digest[:32]), digest[32:]


def _child(
    key: coincurve.PrivateKey, chain_code: bytes, index: int, public: bytes | None = None
) -> tuple[coincurve.PrivateKey, bytes]:
    """BIP-32 ``CKDpriv``: the child ``index`` of the node (``key``, ``chain_code``).

    ``public`` is the node's compressed public key when the caller has it (non-hardened children hash it).
    """
    if index >= _HARDENED:
        data = b"\x00" + key.secret + _ser32(index)
    else:
        data = (public if public is not None else key.public_key.format(compressed=True)) + _ser32(index)
    digest = hmac.new(chain_code, data, hashlib.sha512).digest()
    try:
        # libsecp256k1 refuses a tweak >= n and a zero result: BIP-32's "invalid child" (below 2**-127)
        child = key.add(digest[:32])
    except ValueError:
        raise CustodyError(f"BIP-32 child {index} is invalid for this seed (chance below 2**-127)") from None
    return child, digest[32:]


def _derive(seed: bytes, path: Sequence[int]) -> tuple[bytes, bytes]:
    """The private key and chain code at ``path`` (indices, ``+ 2**31`` for hardened) below ``seed``'s master.

    Internal; exposed so the tests can check the derivation against the BIP-32 test vectors.
    """
    key, chain_code = _master(seed)
    for index in path:
        key, chain_code = _child(key, chain_code, index)
    return key.secret, chain_code


def _address_of_key(key: coincurve.PrivateKey) -> ChecksumAddress:
    return to_checksum_address(keccak(key.public_key.format(compressed=False)[1:])[-20:])


# --------------------------------------------------------------------------- custody


class Custody:
    """The custodial keys of members, ``m/44'/60'/0'/0/<index>`` below one seed.

    Keeps only the account node ``m/44'/60'/0'/0`` (derived once, here), never the seed. Addresses are
    cached (an LRU of the last 65,536 members); signers are derived on each call, so no more member keys
    than needed stay in memory.
    """

    __slots__ = ("_account_key", "_address_cache", "_chain_code", "_public")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray) or not 16 <= len(seed) <= 64:
            raise InvalidSeed("a custody seed is 16 to 64 bytes (BIP-32)")
        key, chain_code = _master(bytes(seed))
        for index in _ACCOUNT_LEVELS:
            key, chain_code = _child(key, chain_code, index)
        self._account_key = key
        self._chain_code = chain_code
        self._public = key.public_key.format(compressed=True)
        self._address_cache: Callable[[int], ChecksumAddress] = lru_cache(maxsize=_ADDRESS_CACHE_SIZE)(
            self._derive_address
        )

    @classmethod
    def generate(cls) -> Custody:
        """A custody with a fresh random 32-byte seed that is kept nowhere: for tests and throwaway dev runs.

        A service that must find its members' keys again after a restart uses
        :func:`custody_from_keystore` (``create=True`` on first start).
        """
        return cls(secrets.token_bytes(32))

    def address_of(self, index: int) -> ChecksumAddress:
        """The checksummed address of member ``index`` (``0 <= index < 2**31``)."""
        return self._address_cache(_checked_index(index))

    def signer_of(self, index: int) -> LocalSigner:
        """A :class:`chain._signer.LocalSigner` holding member ``index``'s key (signs their consents)."""
        key = self._member_key(_checked_index(index))
        return LocalSigner(Account.from_key(key.secret))

    def __repr__(self) -> str:
        return f"Custody({ACCOUNT_PATH}/<index>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Custody holds private keys and is neither picklable nor copyable")

    # -- internals

    def _member_key(self, index: int) -> coincurve.PrivateKey:
        key, _ = _child(self._account_key, self._chain_code, index, self._public)
        return key

    def _derive_address(self, index: int) -> ChecksumAddress:
        return _address_of_key(self._member_key(index))


def _checked_index(index: object) -> int:
    # bool is an int subclass; True is not a member index
    if type(index) is not int or not 0 <= index <= MAX_MEMBER_INDEX:
        raise InvalidMemberIndex(index)
    return index


# --------------------------------------------------------------------------- the keystore entry


def custody_from_keystore(keystore: Keystore, password: str, *, create: bool = False) -> Custody:
    """The custody whose seed is the one key in ``keystore`` (a directory of its own), under ``password``.

    With ``create=True`` an empty (or missing) directory gets a new random seed first; several processes
    doing so at once are serialised by a lock file, so they all end up with the same seed. Raises
    :class:`SeedNotFound` when the directory is empty and ``create`` is false, :class:`KeystoreNotDedicated`
    when it holds more than one key, and the keystore's own errors (``WrongPassword``, ...) as they are.
    """
    if create:
        directory = keystore.directory
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask
        with open(directory / _LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            address = _seed_address(keystore) or keystore.create(password)
    else:
        found = _seed_address(keystore)
        if found is None:
            raise SeedNotFound(
                f"no custody seed in {keystore.directory}; create one with create=True (first start only)"
            )
        address = found
    signer = keystore.load(address, password)
    # LocalSigner deliberately has no public accessor for its key; the custody seed is the one keystore
    # entry that is read as bytes rather than used to sign.
    return Custody(signer._key.secret)


def _seed_address(keystore: Keystore) -> str | None:
    addresses = keystore.addresses()
    if len(addresses) > 1:
        raise KeystoreNotDedicated(
            f"{keystore.directory} holds {len(addresses)} keys; the custody seed needs a keystore directory "
            "of its own (one key, never a signer's)"
        )
    return addresses[0] if addresses else None
