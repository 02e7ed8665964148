"""The ``loyalty`` command line.

Every command reads :class:`~api.Settings` (``LOYALTY_*``); flags override a few of them. Failures print
``error: ...`` on stderr and exit 1. Secrets are never taken from the command line: keystore passwords come
from the settings (a file or ``LOYALTY_KEYSTORE_PASSWORD``) or, in a terminal, from a prompt that does not
echo; a private key to import comes from a file or standard input. No command prints a key or a password.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from web3 import Web3

from chain import ChainError, compile_contracts, load_artifact, stale_artifacts, write_artifacts
from chain._deploy import deploy_ledger
from chain._manifest import DeploymentManifest, verify_manifest
from chain._rpc import Rpc
from chain._signer import InvalidKey
from indexer import IndexerError, MirrorView, reconcile

from ._chain_setup import (
    Prompt,
    fund_on_embedded_chain,
    keystore_from_settings,
    keystore_password,
    load_verified_manifest,
    open_chain,
    sender_from_settings,
    signer_from_settings,
)
from ._index_setup import ProgressBar, indexer_from_settings, mirror_engine
from ._settings import Settings

__all__ = ["main"]

logger = logging.getLogger("api.cli")
T = TypeVar("T")


class CommandError(ChainError):
    """A command cannot do what was asked (bad flags, a manifest already in place)."""


def _prompt() -> Prompt | None:
    """``getpass`` when a person is at the terminal; ``None`` (never ask) in scripts and pipes."""
    return getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None


# --------------------------------------------------------------------------- compile


def _compile(settings: Settings, check: bool) -> int:
    root = settings.project_root.resolve()
    artifacts = compile_contracts(root, settings.solc_binary)
    if check:
        stale = stale_artifacts(artifacts)
        for name, fields in sorted(stale.items()):
            print(f"{name}: committed artifact differs from its sources ({', '.join(fields)})")
        if stale:
            print("run `loyalty compile` and commit chain/artifacts", file=sys.stderr)
            return 1
        print(f"{len(artifacts)} artifacts match their sources")
        return 0
    for path in write_artifacts(artifacts, root / "chain" / "artifacts"):
        print(f"wrote {path.relative_to(root)}")
    return 0


# --------------------------------------------------------------------------- keys


def _keys_new(settings: Settings) -> int:
    keystore = keystore_from_settings(settings)
    address = keystore.create(keystore_password(settings, prompt=_prompt(), confirm=True))
    print(f"created key {address} in {keystore.directory}")
    return 0


def _read_private_key(file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the key file {file}: {type(exc).__name__}") from None
    if sys.stdin is None:
        raise CommandError("no key: pass --file or pipe the key into standard input")
    if sys.stdin.isatty():
        return getpass.getpass("Private key (hex): ").strip()
    return sys.stdin.read().strip()


def _keys_import(settings: Settings, file: Path | None) -> int:
    key = _read_private_key(file)
    if not key:
        raise InvalidKey("no private key given (empty input)")
    keystore = keystore_from_settings(settings)
    address = keystore.import_key(key, keystore_password(settings, prompt=_prompt(), confirm=True))
    del key
    print(f"imported key {address} into {keystore.directory}")
    return 0


def _keys_list(settings: Settings) -> int:
    for address in keystore_from_settings(settings).addresses():
        print(address)
    return 0


# --------------------------------------------------------------------------- deploy and run


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    manifest_path: Path = args.manifest or settings.manifest_path
    if manifest_path.exists() and not args.force:
        raise CommandError(f"{manifest_path} already exists; pass --force to deploy another ledger over it")
    with open_chain(settings) as w3:
        manifest = _deploy_on(settings, w3, args)
        verify_manifest(manifest, w3)
    manifest.write(manifest_path)
    ledger = manifest.ledger
    print(f"LoyaltyLedger deployed at {ledger.address} on chain {manifest.chain_id}")
    print(f"  block {manifest.deployed_at.block_number} ({manifest.deployed_at.block_hash})")
    print(f"  transaction {manifest.deployed_at.transaction_hash}")
    print(f"  deployer {manifest.deployer}, admin {manifest.parameters.admin}")
    print(f"manifest written to {manifest_path}")
    if settings.embedded_chain:
        print("note: the embedded chain (eth-tester://) ended with this command", file=sys.stderr)
    return 0


def _deploy_on(settings: Settings, w3: Web3, args: argparse.Namespace) -> DeploymentManifest:
    """Deploys the ledger on ``w3`` with the settings' parameters, overridden by the flags that are set."""
    chain_id = Rpc(w3).chain_id()
    signer = signer_from_settings(settings, chain_id, prompt=_prompt())
    fund_on_embedded_chain(w3, signer.address)
    sender = sender_from_settings(settings, w3, signer)
    admin = _pick(args, "admin", settings.ledger_admin) or signer.address
    logger.info("deploying LoyaltyLedger from %s on chain %d", signer.address, chain_id)
    return deploy_ledger(
        sender,
        name=_pick(args, "name", settings.token_name),
        symbol=_pick(args, "symbol", settings.token_symbol),
        admin=admin,
        epoch_length=_pick(args, "epoch_length", settings.epoch_length_s),
        validity=_pick(args, "validity", settings.validity_epochs),
        settlement_value=_pick(args, "settlement_value", settings.settlement_value),
    )


def _pick(args: argparse.Namespace, name: str, default: T) -> T:
    value: T | None = getattr(args, name, None)
    return default if value is None else value


def _run(settings: Settings) -> int:
    with open_chain(settings) as w3, tempfile.TemporaryDirectory(prefix="loyalty-mirror-") as scratch:
        if settings.embedded_chain:
            manifest = _deploy_on(settings, w3, argparse.Namespace())
            verify_manifest(manifest, w3)
            where = "the embedded chain"
            # The embedded chain ends with this process: so does its mirror.
            engine = mirror_engine(settings, f"sqlite:///{Path(scratch) / 'ledger.db'}")
        else:
            manifest = load_verified_manifest(settings, Rpc(w3))
            where = settings.rpc_url
            engine = mirror_engine(settings)
        ledger = w3.eth.contract(address=manifest.ledger.address, abi=load_artifact("LoyaltyLedger").abi)
        views = ledger.functions
        epoch_length, validity = views.epochLength().call(), views.validityDuration().call()
        epoch, head = views.currentEpoch().call(), views.ledgerHead().call()
        print(f"LoyaltyLedger on {where} (chain id {manifest.chain_id}) at {ledger.address}")
        print(f"  deployed in block {manifest.deployed_at.block_number} by {manifest.deployer}")
        print(f"  epoch length {epoch_length} s, validity {validity} epochs")
        print(f"  current epoch {epoch}, ledger head 0x{head.hex()}")
        with indexer_from_settings(settings, w3, manifest, engine) as indexer:
            block = indexer.sync()
            entries = indexer.stats.entries
        differences = reconcile(w3, engine, manifest.ledger.address)
        engine.dispose()
        print(
            f"  mirror at block {block}: {entries} new entries, {len(differences)} differences from the chain"
        )
    print("The HTTP service (partners, wallets, audit) arrives with the API issue; see README.md.")
    return 0


# --------------------------------------------------------------------------- the mirror


def _open_deployment(settings: Settings, w3: Web3) -> DeploymentManifest:
    if settings.embedded_chain:
        raise CommandError(
            "the embedded chain (eth-tester://) lives only inside one command; "
            "set LOYALTY_RPC_URL to a node (e.g. anvil://) to index it"
        )
    return load_verified_manifest(settings, Rpc(w3))


def _index(settings: Settings, once: bool) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = mirror_engine(settings)
        progress = ProgressBar()
        indexer = indexer_from_settings(settings, w3, manifest, engine, progress=progress)
        try:
            if once:
                block = indexer.sync()
            else:
                print(
                    f"indexing {manifest.ledger.address} into {engine.url!r}; Ctrl-C stops", file=sys.stderr
                )
                block = indexer.run(stop)
        finally:
            progress.finish()
            indexer.close()
            engine.dispose()
        stats = indexer.stats
        print(
            f"mirror at block {block}: {stats.entries} entries added in {stats.batches} batches, "
            f"{stats.reorgs} reorganisations undone, {stats.retries} retries"
        )
    return 0


def _reconcile(settings: Settings, block: int | None) -> int:
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = mirror_engine(settings)
        try:
            differences = reconcile(w3, engine, manifest.ledger.address, block)
            with engine.connect() as conn:
                at = MirrorView(conn, manifest.ledger.address).cursor.block_number
        finally:
            engine.dispose()
    for difference in differences:
        print(difference)
    if differences:
        print(
            f"{len(differences)} differences between the mirror and the chain at block {at}", file=sys.stderr
        )
        return 1
    print(f"the mirror agrees with the chain at block {at}")
    return 0


# --------------------------------------------------------------------------- entry point


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error never repeats anything that looks like a private key (a key
    mistakenly typed on the command line would otherwise be echoed in "unrecognized arguments: ...")."""

    def error(self, message: str) -> NoReturn:
        super().error(_KEY_LIKE.sub("<redacted>", message))


_KEY_LIKE = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loyalty", description="Coalition loyalty-points ledger.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    compile_cmd = commands.add_parser("compile", help="compile contracts/ into chain/artifacts")
    compile_cmd.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")

    commands.add_parser("run", help="run the service on its embedded defaults")

    keys = commands.add_parser("keys", help="manage the encrypted keystore (LOYALTY_KEYSTORE_DIR)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("new", help="generate a key and store it encrypted")
    import_cmd = key_commands.add_parser(
        "import", help="store an existing private key, read from --file or standard input (never argv)"
    )
    import_cmd.add_argument("--file", type=Path, help="a file holding the private key as hex")
    key_commands.add_parser("list", help="the addresses of the stored keys")

    deploy = commands.add_parser("deploy", help="deploy the ledger and write its deployment manifest")
    deploy.add_argument("--name", help="token name (LOYALTY_TOKEN_NAME)")
    deploy.add_argument("--symbol", help="token symbol (LOYALTY_TOKEN_SYMBOL)")
    deploy.add_argument("--admin", help="admin address (LOYALTY_LEDGER_ADMIN; default: the deployer)")
    deploy.add_argument("--epoch-length", type=int, help="seconds per epoch (LOYALTY_EPOCH_LENGTH_S)")
    deploy.add_argument("--validity", type=int, help="epochs points stay valid (LOYALTY_VALIDITY_EPOCHS)")
    deploy.add_argument("--settlement-value", type=int, help="settlement units per point")
    deploy.add_argument("--manifest", type=Path, help="where to write the manifest (LOYALTY_MANIFEST_PATH)")
    deploy.add_argument("--force", action="store_true", help="overwrite an existing manifest")

    index = commands.add_parser(
        "index", help="mirror the ledger into LOYALTY_DATABASE_URL: backfill, then follow new blocks"
    )
    index.add_argument("--once", action="store_true", help="catch up with the chain, then stop")
    check = commands.add_parser("reconcile", help="compare the mirror with the chain at the mirror's block")
    check.add_argument("--block", type=int, help="the block to compare at (must be the mirror's)")
    return parser


def _settings_error(exc: ValidationError) -> str:
    # Only the location and the message: the input may be a secret.
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "invalid settings: " + "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {_settings_error(exc)}", file=sys.stderr)
        return 1
    try:
        if args.command == "compile":
            return _compile(settings, args.check)
        if args.command == "keys":
            if args.keys_command == "new":
                return _keys_new(settings)
            if args.keys_command == "import":
                return _keys_import(settings, args.file)
            return _keys_list(settings)
        if args.command == "deploy":
            return _deploy(settings, args)
        if args.command == "index":
            return _index(settings, args.once)
        if args.command == "reconcile":
            return _reconcile(settings, args.block)
        return _run(settings)
    except (ChainError, IndexerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
