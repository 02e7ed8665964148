"""Wiring from :class:`~api.Settings` to the chain layer's objects (node, signer, sender, manifest).

The chain layer never reads configuration; the command line and the service build what they need here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Final

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chain import RevertDecoder, load_artifact
from chain._compile import CONTRACTS
from chain._devnode import connect, fund
from chain._manifest import DeploymentManifest, load_manifest, verify_manifest
from chain._rpc import Rpc
from chain._sender import FeePolicy, Sender, SendPolicy
from chain._signer import Keystore, PasswordError, Signer, SignerError, dev_signers, read_password
from chain._types import Wei

from ._settings import Settings

__all__ = [
    "fee_policy",
    "fund_on_embedded_chain",
    "keystore_from_settings",
    "keystore_password",
    "load_verified_manifest",
    "open_chain",
    "revert_decoder",
    "send_policy",
    "sender_from_settings",
    "signer_from_settings",
]

GWEI: Final = 10**9
#: What a dev account gets on the embedded chain, whose funded accounts are eth-tester's, not anvil's.
EMBEDDED_FUNDING: Final = Wei(1_000 * 10**18)

#: Asks the user for a secret without echoing it (``getpass.getpass``); ``None`` when nobody can answer.
Prompt = Callable[[str], str]


# --------------------------------------------------------------------------- the node


@contextmanager
def open_chain(settings: Settings) -> Iterator[Web3]:
    """A ``Web3`` for ``settings.rpc_url`` (see :func:`chain._devnode.connect`), released on exit.

    ``eth-tester://`` is a fresh in-process chain each time (it lives as long as the ``with`` block);
    ``http(s)://`` an existing node; ``anvil://`` an anvil spawned from the project's node_modules.
    """
    with connect(settings.rpc_url, root=settings.project_root.resolve()) as w3:
        yield w3


def fund_on_embedded_chain(w3: Web3, address: str, amount: Wei = EMBEDDED_FUNDING) -> None:
    """Gives ``address`` ether from eth-tester's own funded account when it has none (embedded chain only:
    its funded accounts are eth-tester's, not anvil's dev accounts)."""
    if not isinstance(w3.provider, EthereumTesterProvider):
        return
    if w3.eth.get_balance(to_checksum_address(address)) == 0:
        fund(w3, address, amount)


def revert_decoder() -> RevertDecoder:
    """Decodes the custom errors of every committed contract."""
    return RevertDecoder(load_artifact(name).abi for name in CONTRACTS)


# --------------------------------------------------------------------------- keys


def keystore_from_settings(settings: Settings) -> Keystore:
    return Keystore(settings.keystore_dir, scrypt_n=settings.keystore_scrypt_n)


def keystore_password(settings: Settings, *, prompt: Prompt | None = None, confirm: bool = False) -> str:
    """The keystore password: from ``keystore_password_file`` or ``keystore_password`` when set, else asked
    with ``prompt`` (twice when ``confirm``, for a new key). :class:`PasswordError` when there is none."""
    secret = settings.keystore_password
    if secret is not None or settings.keystore_password_file is not None:
        return read_password(
            file=settings.keystore_password_file,
            value=secret.get_secret_value() if secret is not None else None,
        )
    if prompt is None:
        raise PasswordError(
            "no keystore password: set LOYALTY_KEYSTORE_PASSWORD_FILE or LOYALTY_KEYSTORE_PASSWORD "
            "(or run in a terminal to be asked)"
        )
    password = prompt("Keystore password: ")
    if confirm and prompt("Repeat the password: ") != password:
        raise PasswordError("the two passwords differ")
    return read_password(file=None, value=password)


def signer_from_settings(settings: Settings, chain_id: int, *, prompt: Prompt | None = None) -> Signer:
    """The key that signs for this service on chain ``chain_id``.

    ``signer_address`` set: that key from the keystore (in dev mode, an anvil dev account's address also
    works without a key file). Unset (dev mode only): anvil's dev account 0. Dev keys are refused with
    :class:`~chain._signer.DevKeyRefused` when ``chain_id`` is not a local chain's, and always in production.
    """
    address = settings.signer_address
    if address is None:
        if settings.mode != "dev":
            raise SignerError("production mode signs only with a named key: set LOYALTY_SIGNER_ADDRESS")
        return dev_signers(chain_id)[0]
    keystore = keystore_from_settings(settings)
    if settings.mode == "dev" and address not in keystore.addresses():
        for dev in dev_signers(chain_id, count=20):
            if dev.address == address:
                return dev
    return keystore.load(address, keystore_password(settings, prompt=prompt))


# --------------------------------------------------------------------------- sending


def fee_policy(settings: Settings) -> FeePolicy:
    tip = settings.priority_fee_gwei
    return FeePolicy(
        base_fee_multiplier=settings.base_fee_multiplier,
        priority_fee=None if tip is None else _gwei(tip),
        max_fee_cap=_gwei(settings.max_fee_gwei),
    )


def send_policy(settings: Settings) -> SendPolicy:
    return SendPolicy(
        confirmations=settings.confirmations,
        replace_after=settings.replace_after_s,
        timeout=settings.tx_timeout_s,
    )


def sender_from_settings(settings: Settings, w3: Web3, signer: Signer) -> Sender:
    """A :class:`~chain.Sender` for ``signer`` on ``w3`` with the settings' fees and confirmations."""
    decoder = revert_decoder()
    return Sender(
        Rpc(w3, decoder=decoder),
        signer,
        fees=fee_policy(settings),
        policy=send_policy(settings),
        decoder=decoder,
    )


def _gwei(amount: Decimal) -> Wei:
    return Wei(int(amount * GWEI))


# --------------------------------------------------------------------------- the deployment


def load_verified_manifest(settings: Settings, node: Rpc | Web3) -> DeploymentManifest:
    """The manifest at ``manifest_path``, checked against the node (chain id, block, deployed code)."""
    manifest = load_manifest(settings.manifest_path)
    verify_manifest(manifest, node)
    return manifest
