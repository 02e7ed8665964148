"""The one place configuration is read from the environment (prefix ``LOYALTY_``).

Dev mode (the default) runs on the embedded chain with anvil's well-known dev accounts and needs no setup.
Production mode refuses what is only safe for development (validated when Settings is built):

- the embedded chain (``eth-tester://``): it vanishes with the process, and every point with it;
- signing without naming the key: ``signer_address`` is required (dev mode falls back to dev account 0
  on a local chain), and it must not be one of the public dev accounts;
- a weakened keystore work factor (``keystore_scrypt_n`` below eth-account's standard 2**18).

The keystore password comes from ``keystore_password_file`` or ``LOYALTY_KEYSTORE_PASSWORD`` (one of
them, never both); it is a ``SecretStr``, so it never shows in a ``repr`` or a validation error.

Who holds the ledger's powers (``loyalty deploy``):

- ``LOYALTY_TIMELOCK_DELAY_S`` set: a CoalitionTimelock (OpenZeppelin ``TimelockController``) with that
  minimum delay is deployed first and becomes the ledger's admin *and* treasury, so every registration,
  allowance top-up, settlement value change, transfer switch and role grant is scheduled on chain and
  executes only after the delay (``loyalty timelock list / schedule / execute / cancel``). Its proposers
  (who may schedule and cancel) are ``LOYALTY_TIMELOCK_PROPOSERS`` (default: the deploying key), its
  executors ``LOYALTY_TIMELOCK_EXECUTORS`` (default ``anyone``); both take comma-separated addresses or a
  JSON list, and ``anyone`` stands for the zero address (anyone may execute). ``LOYALTY_LEDGER_ADMIN`` and
  ``LOYALTY_TREASURY_ADDRESS`` must then be unset. Production mode refuses to deploy without a timelock,
  or with a zero delay.
- Unset (dev mode only): the admin is a direct key, ``LOYALTY_LEDGER_ADMIN`` (default: the deploying key),
  which also holds the treasury role unless ``LOYALTY_TREASURY_ADDRESS`` names another key.
- ``LOYALTY_PAUSER_ADDRESS``: the pauser, a direct key in both cases (pausing only removes power); by
  default the admin key, or the deploying key behind a timelock. The zero address leaves a role unheld.
- ``LOYALTY_ADMIN_DELAY_S``: the two-step admin handover's delay (default three days).
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from eth_utils.address import is_address, to_checksum_address
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["STANDARD_SCRYPT_N", "Settings"]

#: eth-account's scrypt work factor for new key files; production refuses anything weaker.
STANDARD_SCRYPT_N = 2**18
#: The name of the embedded in-process chain.
EMBEDDED_CHAIN = "eth-tester://"
#: In a timelock's executor list: anyone may execute (OpenZeppelin's open role, the zero address).
ANYONE = "anyone"
ZERO_ADDRESS = "0x" + "00" * 20


@cache
def _dev_addresses() -> frozenset[str]:
    from chain._signer import dev_signers

    return frozenset(s.address for s in dev_signers(31337, count=20))


class Settings(BaseSettings):
    """Service configuration. Every field can be set as ``LOYALTY_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore", frozen=True)

    mode: Literal["dev", "production"] = "dev"
    #: Where the chain is: ``eth-tester://`` is the embedded in-process chain; ``http(s)://``, ``ws(s)://``
    #: a JSON-RPC node; ``anvil://`` a throwaway anvil spawned from node_modules.
    rpc_url: str = EMBEDDED_CHAIN
    #: The project checkout (contracts/, node_modules/) used by `loyalty compile`.
    project_root: Path = Path(".")
    #: A native solc of the pinned version; solcjs from node_modules when unset. ``SOLC_BINARY`` also works.
    solc_binary: Path | None = Field(
        default=None, validation_alias=AliasChoices("LOYALTY_SOLC_BINARY", "SOLC_BINARY")
    )

    # ------------------------------------------------------------------ keys
    #: Encrypted key files (Web3 Secret Storage v3), one per key.
    keystore_dir: Path = Path(".loyalty/keystore")
    #: The keystore password itself (``LOYALTY_KEYSTORE_PASSWORD``); or use ``keystore_password_file``.
    keystore_password: SecretStr | None = None
    #: A file holding the keystore password (one trailing newline ignored).
    keystore_password_file: Path | None = None
    #: scrypt work factor of keys created or imported from now on; ``None``: the standard 2**18.
    keystore_scrypt_n: int | None = Field(default=None, ge=2)
    #: The keystore key that signs transactions. Dev mode without it: anvil's dev account 0 (local chains
    #: only). In dev mode an address of one of anvil's dev accounts also works without a key file.
    signer_address: str | None = None

    # ------------------------------------------------------------------ deployment and sending
    #: Where `loyalty deploy` writes the deployment manifest and clients read it.
    manifest_path: Path = Path(".loyalty/deployment.json")
    #: Blocks on top of a transaction's block before it counts as done (0 on local chains).
    confirmations: int = Field(default=0, ge=0)
    #: ``maxFeePerGas = base fee x base_fee_multiplier + tip``.
    base_fee_multiplier: float = Field(default=2.0, ge=1.0)
    #: The tip in gwei; asked of the node when unset.
    priority_fee_gwei: Decimal | None = Field(default=None, ge=0)
    #: The highest ``maxFeePerGas`` ever offered, in gwei.
    max_fee_gwei: Decimal = Field(default=Decimal(500), gt=0)
    #: A transaction not mined this many seconds after it was broadcast is replaced with higher fees.
    replace_after_s: float = Field(default=30.0, gt=0)
    #: How long to wait for a transaction before giving up.
    tx_timeout_s: float = Field(default=300.0, gt=0)

    # ------------------------------------------------------------------ ledger parameters (deploy)
    token_name: str = Field(default="Coalition Points", min_length=1)
    token_symbol: str = Field(default="PTS", min_length=1)
    #: The coalition admin when there is no timelock; the deploying key when unset.
    ledger_admin: str | None = None
    #: TREASURY_ROLE (settlement value, settlement records) without a timelock; the admin when unset.
    treasury_address: str | None = None
    #: PAUSER_ROLE: pause, unpause, suspend a partner. The admin key when unset (the deploying key behind
    #: a timelock).
    pauser_address: str | None = None
    #: Seconds between beginning an admin handover and accepting it.
    admin_delay_s: int = Field(default=3 * 24 * 3600, ge=0, lt=2**48)
    #: The timelock's minimum delay in seconds; unset: no timelock (dev mode only).
    timelock_delay_s: int | None = Field(default=None, ge=0)
    #: Who may schedule and cancel timelock operations (comma-separated or a JSON list); the deploying key
    #: when empty.
    timelock_proposers: Annotated[tuple[str, ...], NoDecode] = ()
    #: Who may execute ready operations; ``anyone`` (the default) lets any account execute them.
    timelock_executors: Annotated[tuple[str, ...], NoDecode] = (ZERO_ADDRESS,)
    #: Seconds per ERC-7818 epoch (default 30 days).
    epoch_length_s: int = Field(default=30 * 24 * 3600, gt=0)
    #: How many epochs points stay valid.
    validity_epochs: int = Field(default=12, gt=0)
    #: Settlement units per point.
    settlement_value: int = Field(default=1, ge=0)
    #: Seconds after an issuance during which its partner may reverse it (returns; default 90 days).
    reversal_window_s: int = Field(default=90 * 24 * 3600, ge=0)

    # ------------------------------------------------------------------ the indexer (the SQL mirror)
    #: The mirror's database: ``sqlite:///path`` (embedded) or ``postgresql://user@host/db`` (production).
    #: On the embedded chain, which lives only as long as the process, the mirror is a temporary file.
    database_url: str = "sqlite:///.loyalty/ledger.db"
    #: Blocks behind the head the indexer stays (0 on a local node; a few on an L2, more on L1).
    index_confirmations: int = Field(default=0, ge=0)
    #: Seconds between polls for new blocks once caught up.
    index_poll_interval_s: float = Field(default=1.0, gt=0)
    #: Unfinalised blocks whose hashes the mirror keeps: the deepest reorganisation it can undo.
    reorg_window: int = Field(default=64, ge=1)
    #: Tier names and the qualifying points each needs (JSON object in the environment), from 0 up.
    tier_thresholds: dict[str, int] = Field(
        default_factory=lambda: {"member": 0, "silver": 1_000, "gold": 5_000, "platinum": 20_000}
    )
    #: The rolling window of qualifying points, in epochs (12 epochs of 30 days: about a year).
    tier_qualifying_epochs: int = Field(default=12, gt=0)

    # ------------------------------------------------------------------ the HTTP service (`loyalty serve`)
    #: Where uvicorn listens, and how many worker processes it runs.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, lt=65536)
    api_workers: int = Field(default=1, ge=1)
    #: Threads per worker that run the routes (their reads are short: more threads only contend).
    api_threads: int = Field(default=4, ge=1, le=200)
    #: The service's public origin (scheme, host, port): WebAuthn's origin, SIWE's domain and URI, the
    #: enrolment links' base.
    public_url: str = "http://localhost:8000"
    #: WebAuthn relying party id (a registrable domain of ``public_url``'s host); its host when unset.
    rp_id: str | None = None
    #: Member sessions' lifetime, and SIWE nonces' / WebAuthn challenges' / link codes' / enrolment links'.
    session_ttl_s: int = Field(default=3600, gt=0)
    challenge_ttl_s: int = Field(default=300, gt=0)
    link_code_ttl_s: int = Field(default=900, gt=0)
    enrolment_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    #: Requests per API key, and per client address for members and anonymous callers (``limits``
    #: notation); shared by every replica through Redis when ``redis_url`` is set, in memory otherwise.
    rate_limit_per_key: str = "600/minute"
    rate_limit_per_client: str = "120/minute"
    redis_url: str | None = None
    #: ``/readyz`` fails when the mirror is more blocks than this behind the chain's head.
    ready_max_lag_blocks: int = Field(default=20, ge=0)
    #: Seconds an Idempotency-Key's record (and its stored response) is kept: at least a day.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=24 * 3600)
    #: An Idempotency-Key in flight this long is taken to belong to a process that died: the next request
    #: with it runs (the write path's natural keys keep that from doing anything twice).
    idempotency_abandoned_after_s: int = Field(default=60, ge=1)
    #: Log lines as JSON objects (``json``) or readable text (``text``); unset: JSON in production mode,
    #: text in dev mode (``api/_logging.py``).
    log_format: Literal["json", "text"] | None = None
    #: When set, ``GET /metrics`` answers only ``Authorization: Bearer <this token>`` (Prometheus's
    #: ``authorization`` scrape setting); unset, it answers anyone who reaches it (keep it on the internal
    #: network: it shows each partner's outbox).
    metrics_token: SecretStr | None = None

    # ------------------------------------------------------------------ the write path
    #: Points a partner key may grant in one adjustment; more needs an admin key.
    adjustment_limit: int = Field(default=1_000, ge=0)
    #: Group commit: the batcher sends an ``issueBatch`` of at most this many items ...
    batch_max_items: int = Field(default=200, ge=1, le=2_000)
    #: ... and, when idle, looks for due operations this often (seconds).
    batch_flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    #: Transactions a batcher sends before it waits for their receipts.
    batch_max_in_flight: int = Field(default=16, ge=1, le=256)

    # ------------------------------------------------------------------ webhooks (api/_webhooks.py)
    #: The key (64 hex digits: 32 bytes) that encrypts webhook signing secrets at rest. Unset: derived from
    #: the custody seed in the keystore when a keystore password is configured; else, in dev mode only, a
    #: public dev key (production refuses to store a secret under it).
    webhook_secrets_key: SecretStr | None = None
    #: Seconds a webhook endpoint has to answer a delivery (connecting included).
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Seconds between a failed delivery attempt and the next (a JSON list): after the last, it is given
    #: up (``failed``). The default retries for a little over 24 hours (the last attempt 27.6 h after the
    #: first), as Standard Webhooks senders commonly do.
    webhook_retry_schedule_s: tuple[Annotated[int, Field(gt=0, le=7 * 24 * 3600)], ...] = Field(
        default=(5, 300, 1_800, 7_200, 18_000, 36_000, 36_000), min_length=1, max_length=20
    )
    #: Seconds a rotated-out signing secret keeps signing deliveries beside the new one (both signatures
    #: in ``webhook-signature``), so a partner can switch its receiver without missing one.
    webhook_secret_grace_s: int = Field(default=24 * 3600, ge=0, le=30 * 24 * 3600)
    #: Seconds between two looks for due deliveries (``loyalty jobs``), and how many are sent at once.
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)

    # ------------------------------------------------------------------ `loyalty up` (api/_up.py)
    #: Where ``loyalty up`` keeps what it runs on so that the next run resumes: the spawned anvil's chain,
    #: the SQLite database, the keystore, the deployment manifest, the demo's keys (each unless its own
    #: setting names another place).
    up_state_dir: Path = Path(".loyalty/up")
    #: How much activity the demo coalition of ``loyalty up`` (dev mode) is seeded with: 1 is the demo as
    #: shipped (a dozen members, a year of purchases); 0 only its named members (tests); up to 5.
    demo_scale: float = Field(default=1.0, ge=0, le=5)

    @field_validator("signer_address", "ledger_admin", "treasury_address", "pauser_address")
    @classmethod
    def _checksummed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_address(value):
            raise ValueError("must be a 0x-prefixed 20-byte address")
        return to_checksum_address(value)

    @field_validator("timelock_proposers", "timelock_executors", mode="before")
    @classmethod
    def _address_list(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            text = value.strip()
            parts = [part for part in text.split(",") if part.strip()]
            items: Any = json.loads(text) if text.startswith("[") else parts
        else:
            items = value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError("must be addresses, comma-separated or as a JSON list")
        out = []
        for item in (i.strip() for i in items):
            if item.lower() == ANYONE:
                out.append(ZERO_ADDRESS)
            elif is_address(item):
                out.append(to_checksum_address(item))
            else:
                raise ValueError(f"{item!r} is not a 0x-prefixed 20-byte address (nor {ANYONE!r})")
        return tuple(out)

    @field_validator("tier_thresholds")
    @classmethod
    def _tiers_from_zero(cls, value: dict[str, int]) -> dict[str, int]:
        if not value or min(value.values()) != 0 or len(set(value.values())) != len(value):
            raise ValueError("tier thresholds need one tier at 0 points and distinct thresholds")
        return dict(sorted(value.items(), key=lambda item: item[1]))

    @field_validator("keystore_scrypt_n")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError("must be a power of two (scrypt's N)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.keystore_password is not None and self.keystore_password_file is not None:
            raise ValueError("set keystore_password or keystore_password_file, not both")
        if self.timelock_delay_s is not None and (self.ledger_admin or self.treasury_address):
            raise ValueError(
                "with a timelock (timelock_delay_s), the timelock is the ledger's admin and treasury: "
                "unset ledger_admin and treasury_address"
            )
        if ZERO_ADDRESS in self.timelock_proposers:
            raise ValueError("timelock_proposers: the zero address (anyone) cannot propose")
        if self.mode == "production":
            self._refuse_dev_only()
        return self

    def _refuse_dev_only(self) -> None:
        if self.rpc_url.startswith(EMBEDDED_CHAIN):
            raise ValueError("production mode needs a real node: set LOYALTY_RPC_URL (not eth-tester://)")
        if self.signer_address is None:
            raise ValueError("production mode needs LOYALTY_SIGNER_ADDRESS (a key in the keystore)")
        if self.signer_address in _dev_addresses():
            raise ValueError(f"{self.signer_address} is a public dev account; refused in production mode")
        if self.keystore_scrypt_n is not None and self.keystore_scrypt_n < STANDARD_SCRYPT_N:
            raise ValueError(f"keystore_scrypt_n below {STANDARD_SCRYPT_N} is for tests, not production mode")

    @property
    def relying_party_id(self) -> str:
        """WebAuthn's RP id: ``rp_id``, else the host of ``public_url``."""
        from urllib.parse import urlsplit

        return self.rp_id or (urlsplit(self.public_url).hostname or "localhost")

    @property
    def siwe_domain(self) -> str:
        """The ``domain`` a SIWE message must name: ``public_url``'s authority (host and port)."""
        from urllib.parse import urlsplit

        return urlsplit(self.public_url).netloc

    @property
    def timelock(self) -> bool:
        """Whether ``loyalty deploy`` puts a timelock in front of the ledger."""
        return self.timelock_delay_s is not None

    @property
    def embedded_chain(self) -> bool:
        """Whether the chain is the in-process eth-tester one (it lives only as long as this process)."""
        return self.rpc_url.startswith(EMBEDDED_CHAIN)
