"""Wiring from :class:`~api.Settings` to the chain layer's objects (node, signer, sender, manifest).

The chain layer never reads configuration; the command line and the service build what they need here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeVar

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chain import ChainError, RevertDecoder, TimelockConfig
from chain._deploy import deploy_ledger
from chain._devnode import connect, fund
from chain._ledger import Ledger
from chain._manifest import DeploymentManifest, load_manifest, verify_manifest
from chain._rpc import Rpc
from chain._sender import FeePolicy, Sender, SendPolicy
from chain._signer import Keystore, PasswordError, Signer, SignerError, dev_signers, read_password
from chain._timelock import Timelock
from chain._types import Wei

from ._settings import Settings

__all__ = [
    "DeploySettingsError",
    "LedgerOverrides",
    "check_deployment_mode",
    "deploy_from_settings",
    "fee_policy",
    "fund_on_embedded_chain",
    "keystore_from_settings",
    "keystore_password",
    "load_verified_manifest",
    "open_chain",
    "open_ledger",
    "open_timelock",
    "revert_decoder",
    "send_policy",
    "sender_from_settings",
    "signer_from_settings",
    "timelock_config",
]

GWEI: Final = 10**9
#: What a dev account gets on the embedded chain, whose funded accounts are eth-tester's, not anvil's.
EMBEDDED_FUNDING: Final = Wei(1_000 * 10**18)

T = TypeVar("T")

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
    """Decodes the custom errors of every committed contract (the ledger's and the timelock's)."""
    return RevertDecoder.for_contracts()


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


def open_ledger(manifest: DeploymentManifest, rpc: Rpc, sender: Sender | None = None) -> Ledger:
    """The typed client of the manifest's ledger (the manifest must already be verified)."""
    return Ledger(rpc, manifest.ledger.address, sender=sender)


def open_timelock(manifest: DeploymentManifest, rpc: Rpc, sender: Sender | None = None) -> Timelock:
    """The typed client of the manifest's timelock; :class:`DeploySettingsError` for a deployment without."""
    if manifest.timelock is None:
        raise DeploySettingsError(
            f"the ledger at {manifest.ledger.address} has no timelock: its admin is the key "
            f"{manifest.parameters.admin}"
        )
    return Timelock(rpc, manifest.timelock.address, sender=sender)


class DeploySettingsError(ChainError):
    """The settings do not describe a deployment this mode allows (e.g. production without a timelock)."""


@dataclass(frozen=True, slots=True)
class LedgerOverrides:
    """Command-line values that take precedence over the settings for one deployment (``None``: the
    setting)."""

    name: str | None = None
    symbol: str | None = None
    admin: str | None = None
    epoch_length: int | None = None
    validity: int | None = None
    settlement_value: int | None = None


def check_deployment_mode(settings: Settings) -> None:
    """Refuses what the mode forbids: production deploys only behind a timelock with a delay above 0, so
    that every change that creates issuing power or moves money is visible on chain before it takes effect.
    """
    if settings.mode != "production":
        return
    if settings.timelock_delay_s is None:
        raise DeploySettingsError(
            "production mode deploys the ledger behind a timelock: set LOYALTY_TIMELOCK_DELAY_S "
            "(seconds between scheduling an admin operation and its execution)"
        )
    if settings.timelock_delay_s == 0:
        raise DeploySettingsError("production mode needs LOYALTY_TIMELOCK_DELAY_S above 0")


def timelock_config(settings: Settings, deployer: str) -> TimelockConfig | None:
    """The timelock the settings ask for (proposers default to ``deployer``), or ``None`` for none (dev mode
    only: :func:`check_deployment_mode`)."""
    check_deployment_mode(settings)
    if settings.timelock_delay_s is None:
        return None
    proposers = settings.timelock_proposers or (deployer,)
    return TimelockConfig(
        min_delay=settings.timelock_delay_s,
        proposers=tuple(to_checksum_address(p) for p in proposers),
        executors=tuple(to_checksum_address(e) for e in settings.timelock_executors),
    )


def deploy_from_settings(
    settings: Settings, sender: Sender, overrides: LedgerOverrides = LedgerOverrides()
) -> DeploymentManifest:
    """Deploys the ledger with the settings' parameters and roles (a timelock when they ask for one; see
    :class:`~api.Settings`), the flags in ``overrides`` taking precedence. Dev mode without a timelock: the
    admin (``ledger_admin``, else the deploying key) also holds the treasury and pauser roles unless those
    name other keys."""
    timelock = timelock_config(settings, sender.address)
    admin = overrides.admin or settings.ledger_admin
    if timelock is not None and admin is not None:
        raise DeploySettingsError("with a timelock, the timelock is the ledger's admin: do not name an admin")
    if timelock is None:
        admin = admin or sender.address
    return deploy_ledger(
        sender,
        name=_pick(overrides.name, settings.token_name),
        symbol=_pick(overrides.symbol, settings.token_symbol),
        admin=admin,
        treasury=settings.treasury_address,
        pauser=settings.pauser_address,
        admin_delay=settings.admin_delay_s,
        epoch_length=_pick(overrides.epoch_length, settings.epoch_length_s),
        validity=_pick(overrides.validity, settings.validity_epochs),
        settlement_value=_pick(overrides.settlement_value, settings.settlement_value),
        reversal_window=settings.reversal_window_s,
        timelock=timelock,
    )


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value
