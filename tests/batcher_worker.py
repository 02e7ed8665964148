"""A batcher in a process of its own that kills itself with SIGKILL at one point of its work (what `kill -9`
does to a batcher at that moment), for tests/test_earning_crash.py.

    python tests/batcher_worker.py   (configuration in the environment)

    WORKER_DATABASE_URL, WORKER_RPC_URL, WORKER_LEDGER, WORKER_PARTNER, WORKER_OPERATOR (a dev account's
    address), WORKER_CRASH: one of CRASH_POINTS (or "none": drain and exit 0)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

from web3 import HTTPProvider, Web3

from api._batcher import Batcher, _Outgoing
from chain import Ledger, PendingTransaction, Rpc, Sender
from chain._signer import dev_signers
from chain._types import Receipt
from indexer import make_engine

#: where the batcher dies: after storing a batch; after broadcasting it (before recording the
#: transaction); after recording it (before its receipt); with the receipt in hand (nothing recorded);
#: in the middle of recording the confirmation (an uncommitted transaction)
CRASH_POINTS = ("after-commit", "after-broadcast", "before-receipt", "after-receipt", "during-confirmation")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingLedger(Ledger):
    crash: str = "none"

    def issue_batch(self, *args: Any, **kwargs: Any) -> PendingTransaction:
        pending = super().issue_batch(*args, **kwargs)
        if self.crash == "after-broadcast":
            _die()
        return pending


class CrashingBatcher(Batcher):
    crash: str = "none"

    def _compose(self, now: int, room: int) -> list[int]:
        ids = super()._compose(now, room)
        if ids and self.crash == "after-commit":
            _die()
        return ids

    def _await(self, outgoing: Sequence[_Outgoing]) -> tuple[int, int]:
        if outgoing and self.crash == "before-receipt":
            _die()
        return super()._await(outgoing)

    def _settle(self, batch_id: int | None, op_id: int | None, receipt: Receipt) -> bool:
        if self.crash == "after-receipt":
            _die()
        return super()._settle(batch_id, op_id, receipt)

    def _confirm_batch(self, *args: Any, **kwargs: Any) -> None:
        super()._confirm_batch(*args, **kwargs)
        if self.crash == "during-confirmation":
            _die()  # the session has the confirmation flushed in memory, not committed


def main() -> None:
    env = os.environ
    w3 = Web3(HTTPProvider(env["WORKER_RPC_URL"]))
    rpc = Rpc(w3)
    operator = next(s for s in dev_signers(rpc.chain_id(), count=20) if s.address == env["WORKER_OPERATOR"])
    ledger = CrashingLedger(rpc, env["WORKER_LEDGER"], sender=Sender(rpc, operator))
    ledger.crash = env["WORKER_CRASH"]
    batcher = CrashingBatcher(make_engine(env["WORKER_DATABASE_URL"]), ledger, int(env["WORKER_PARTNER"]))
    batcher.crash = env["WORKER_CRASH"]
    batcher.drain()


if __name__ == "__main__":
    main()
