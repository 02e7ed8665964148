"""The ``loyalty`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chain import ChainError, compile_contracts, load_artifact, stale_artifacts, write_artifacts
from chain._deploy import deploy_contract
from chain._devnode import eth_tester_web3

from ._settings import Settings

__all__ = ["main"]


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


def _run(settings: Settings) -> int:
    if settings.rpc_url != "eth-tester://":
        print(f"only the embedded chain (eth-tester://) is supported so far, not {settings.rpc_url}")
        return 2
    w3 = eth_tester_web3()
    admin = w3.eth.accounts[0]
    ledger = deploy_contract(
        w3,
        load_artifact("LoyaltyLedger"),
        "Coalition Points",
        "PTS",
        admin,
        30 * 24 * 3600,
        12,
        1,
        sender=admin,
    )
    views = ledger.functions
    print(f"LoyaltyLedger deployed on the embedded chain (chain id {w3.eth.chain_id}) at {ledger.address}")
    print(f"  epoch length {views.epochLength().call()} s, validity {views.validityDuration().call()} epochs")
    print(f"  current epoch {views.currentEpoch().call()}, ledger head 0x{views.ledgerHead().call().hex()}")
    print("The HTTP service (partners, wallets, audit) arrives with the API issue; see README.md.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty", description="Coalition loyalty-points ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    compile_cmd = commands.add_parser("compile", help="compile contracts/ into chain/artifacts")
    compile_cmd.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")
    commands.add_parser("run", help="run the service on its embedded defaults")
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        if args.command == "compile":
            return _compile(settings, args.check)
        return _run(settings)
    except ChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
