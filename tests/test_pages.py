"""The web pages in a real headless Chromium: the member wallet, the partner dashboard and the audit explorer,
served by the service under uvicorn at ``http://localhost:PORT`` (WebAuthn needs a secure context and a
registrable RP id: ``localhost`` is both, ``127.0.0.1`` is not).

The service is the scripted scenario of ``tests/api_scenario.py`` on anvil, with partner A's earning rules
(points pending for two weeks), a rewards catalogue and a pending purchase of member A. In the browser:

- sign-in: a custodial member registers a passkey from their enrolment link and signs in with it again,
  through Chromium's virtual authenticator (CTAP2, internal, resident key, user verification); member A
  signs in with Ethereum, with a test wallet (``window.ethereum``) whose ``personal_sign`` is eth-account's
  in this process and which answers its address in lower case (the page checksums it);
- a redemption code: shown as digits and a QR code, used at a simulated till (this test posts it with
  partner A's key, as a till would), sent by the batcher, mirrored; the wallet then shows the lower balance;
- the figures on screen equal the API's (balance, tier, points away, pending; the partner's position and
  quote; the hash-chain head, supply, reconciliation);
- navigation between the pages, the keyboard, the phone viewport (375 px: nothing wider than the screen);
- axe-core on every page: no violation of impact serious or critical;
- screenshots of the three pages, written to ``$LOYALTY_TEST_ARTIFACTS`` (default ``test-artifacts/``).

Without ``/usr/bin/chromium`` the module is skipped, unless ``CI`` is set (CI installs it): then it fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from api_scenario import Service, build_service
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Browser, BrowserContext, CDPSession, ConsoleMessage, Page, sync_playwright

from api._batcher import Batcher
from api._sessions import open_session
from api._tables import Price
from chain import Points, ReasonCode
from conftest import ACTIVE, AnvilNode, chain_ledger, random_ref

pytestmark = pytest.mark.anvil

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("LOYALTY_TEST_ARTIFACTS") or ROOT / "test-artifacts")

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI installs Debian's chromium for the browser tests")
    pytest.skip(f"no {CHROMIUM} (Debian's chromium package)", allow_module_level=True)

#: Partner A's earning rules: a point per euro, coffee doubled, purchase points pending for two weeks.
RULES: dict[str, Any] = {
    "earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}},
    "categories": {"coffee": "2"},
    "pending_days": 14,
}
#: Partner A's commercial price, in force since before its first entry.
PRICE = {"effective_from": 0, "currency": "EUR", "issue_price": "0.01", "redeem_price": "0.008"}
#: Partner A's rewards: one member A's balance covers, one it does not (the wallet's "points away").
REWARDS = ({"name": "Espresso", "points_price": 30}, {"name": "Breakfast for two", "points_price": 400})


# --------------------------------------------------------------------------- the served service


@dataclass
class Served:
    service: Service
    url: str
    http: httpx.Client

    def get(self, caller: str, path: str, **kwargs: Any) -> Any:
        response = self.http.get(path, headers=self.service.headers(caller), **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, caller: str, path: str, body: Any, status: int = 201) -> Any:
        response = self.http.post(path, headers=self.service.headers(caller), json=body)
        assert response.status_code == status, response.text
        return response.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _uvicorn(app: Any, port: int) -> Iterator[None]:
    """``app`` under uvicorn in a thread, on 127.0.0.1:port (``localhost`` names it)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-pages", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_pages(node: AnvilNode, database_url: str) -> Iterator[Served]:
    """The scenario service with partner A's rules, rewards and a pending purchase of member A, served at
    ``http://localhost:PORT`` (its public URL, so WebAuthn's origin and RP id and SIWE's domain match)."""
    port = _free_port()
    url = f"http://localhost:{port}"
    with build_service(node, database_url) as service:
        services = service.services
        services.settings = services.settings.model_copy(update={"public_url": url})
        with _uvicorn(service.client.app, port), httpx.Client(base_url=url, timeout=30) as http:
            served = Served(service, url, http)
            with services.session() as db:  # the price the admin had set before the scenario began
                db.add(Price(partner_id=ACTIVE, created_at=0, **PRICE))
            rules = served.post("partner_a", f"/v1/partners/{ACTIVE}/rule-sets", RULES)
            served.post("partner_a", f"/v1/partners/{ACTIVE}/rule-sets/{rules['hash']}/activate", None, 200)
            for reward in REWARDS:
                served.post("partner_a", f"/v1/partners/{ACTIVE}/rewards", reward)
            served.post(
                "partner_a",
                "/v1/purchases",
                {
                    "order_id": "web-1001",
                    "member": {"customer_id": "cust-member_a"},
                    "channel": "online",
                    "currency": "EUR",
                    "amount": 2450,
                    "lines": [{"sku": "BEANS-1KG", "category": "coffee", "quantity": 1, "unit_price": 2450}],
                },
            )
            yield served


def issue(service: Service, address: str, points: int) -> None:
    """Partner A issues ``points`` to ``address`` on chain, and the mirror follows."""
    partner = chain_ledger(service.ledger, service.ledger.actors.partner)
    partner.issue(
        service.ledger.w3.to_checksum_address(address), Points(points), random_ref(), ReasonCode(1)
    ).wait()
    service.sync()


def send_outbox(service: Service) -> None:
    """Partner A's batcher sends what is due; the indexer mirrors it."""
    Batcher(
        service.engine,
        chain_ledger(service.ledger, service.ledger.actors.partner),
        ACTIVE,
        clock=service.chain_time,
    ).drain(timeout=60)
    service.sync()


# --------------------------------------------------------------------------- the browser

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
#: axe-core's impacts this suite refuses.
REFUSED_IMPACTS = {"serious", "critical"}
#: A test wallet in the page: ``window.ethereum`` (EIP-1193) whose ``personal_sign`` is signed in this
#: process (``window.__testWalletSign``); it answers its address in lower case, as many wallets do.
TEST_WALLET = """
window.ethereum = {
  isTestWallet: true,
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [ADDRESS];
    if (method === "personal_sign") return await window.__testWalletSign(params[0], params[1]);
    throw Object.assign(new Error(`unsupported ${method}`), { code: 4200 });
  },
};
"""


@pytest.fixture(scope="module")
def served(anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    snapshot = anvil_node.snapshot()
    try:
        database = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'mirror.db'}"
        with serve_pages(anvil_node, database) as served:
            yield served
    finally:
        anvil_node.revert(snapshot)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def new_context(browser: Browser, served: Served, **options: Any) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies, no storage) on the served pages."""
    options.setdefault("viewport", DESKTOP)
    ctx = browser.new_context(base_url=served.url, **options)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def context(browser: Browser, served: Served) -> Iterator[BrowserContext]:
    """A fresh profile at a desktop size; the pages' own Content-Security-Policy applies."""
    with new_context(browser, served) as ctx:
        yield ctx


class Watched:
    """A page and what went wrong in it: uncaught errors, refusals by its Content-Security-Policy."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.errors.append(f"csp: {message.text}")

    def assert_clean(self) -> None:
        assert self.errors == []


def watch(ctx: BrowserContext) -> Watched:
    return Watched(ctx.new_page())


def shown(page: Page, selector: str) -> str:
    """The raw figure behind what ``selector`` shows (its ``data-value``), once it is on the page."""
    locator = page.locator(f"{selector} [data-value], {selector}[data-value]").first
    locator.wait_for()
    found = locator.get_attribute("data-value")
    assert found is not None
    return found


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in_with_key(page: Page, token: str) -> None:
    """Types an API key into the page's sign-in form with the keyboard alone."""
    page.locator("#api-key").wait_for()
    for _ in range(30):  # Tab from the top of the page to the key's field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "api-key":
            break
    else:
        pytest.fail("the API key field cannot be reached with the Tab key")
    page.keyboard.type(token)
    page.keyboard.press("Enter")


def add_test_wallet(ctx: BrowserContext, account: LocalAccount) -> list[str]:
    """``window.ethereum`` in every page of ``ctx``, signing as ``account``; answers the messages signed."""
    signed: list[str] = []

    def sign(message_hex: str, address: str) -> str:
        assert address.lower() == account.address.lower()
        message = bytes.fromhex(message_hex.removeprefix("0x")).decode()
        signed.append(message)
        return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()

    ctx.expose_function("__testWalletSign", sign)
    ctx.add_init_script(TEST_WALLET.replace("ADDRESS", json.dumps(account.address.lower())))
    return signed


@dataclass
class Authenticator:
    cdp: CDPSession
    id: str

    def credentials(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})[
            "credentials"
        ]
        return found


def add_authenticator(page: Page) -> Authenticator:
    """Chromium's virtual authenticator on ``page``: a platform authenticator (CTAP2, internal) with
    resident keys and user verification, which consents by itself."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return Authenticator(cdp, added["authenticatorId"])


# --------------------------------------------------------------------------- the reads the pages add


def test_a_key_reads_itself_and_its_partners_keys_never_their_tokens(served: Served) -> None:
    service = served.service
    me = served.get("partner_a", "/v1/api-key")
    assert (me["role"], me["partner_id"], me["name"]) == ("partner", ACTIVE, "partner_a")
    assert service.tokens["partner_a"].startswith(me["prefix"]) and "token" not in me
    assert served.get("auditor", "/v1/api-key")["role"] == "auditor"
    keys = served.get("partner_a", f"/v1/partners/{ACTIVE}/api-keys")["data"]
    assert [k["name"] for k in keys] == ["partner_a"]  # the revoked one only on request
    everything = served.get("auditor", f"/v1/partners/{ACTIVE}/api-keys?include_revoked=true")["data"]
    assert sorted(k["name"] for k in everything) == ["partner_a", "revoked"]
    assert not any("token" in k for k in everything)
    refused = {
        ("partner_b", f"/v1/partners/{ACTIVE}/api-keys"): 403,  # another partner's keys
        ("member_a", f"/v1/partners/{ACTIVE}/api-keys"): 403,
        ("member_a", "/v1/api-key"): 403,  # a session is not a key
        ("anonymous", "/v1/api-key"): 401,
        ("revoked", "/v1/api-key"): 401,
    }
    for (caller, path), status in refused.items():
        answer = served.http.get(path, headers=service.headers(caller))
        assert answer.status_code == status, (caller, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


# --------------------------------------------------------------------------- navigation


def test_the_home_page_links_the_three_pages_and_they_link_each_other(
    served: Served, context: BrowserContext
) -> None:
    watched = watch(context)
    page = watched.page
    response = page.goto("/")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("h1").inner_text().startswith("One point currency")
    main = page.locator("main")
    for href in ("/wallet", "/partner", "/explorer", "/docs"):
        assert main.locator(f"a[href='{href}']").count() == 1, href
    # The skip link comes first, visibly focused; it leads to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    # From the home page to each page, and along the navigation bar between them.
    main.get_by_role("link", name="Member wallet").click()
    page.wait_for_url("**/wallet")
    assert page.locator("h1").inner_text() == "Your wallet"
    page.locator("#signin").wait_for()  # nobody is signed in
    nav = page.get_by_role("navigation", name="Pages")
    nav.get_by_role("link", name="Partner dashboard").click()
    page.wait_for_url("**/partner")
    assert page.locator("h1").inner_text() == "Partner dashboard"
    assert nav.locator("a[aria-current='page']").inner_text() == "Partner dashboard"
    nav.get_by_role("link", name="Audit explorer").click()
    page.wait_for_url("**/explorer")
    assert page.locator("h1").inner_text() == "Audit explorer"
    nav.get_by_role("link", name="Home").click()
    page.wait_for_url(served.url + "/")
    # At another address of the service, the wallet sends the member to its public one (passkeys are bound
    # to it, and the Sign-In with Ethereum message names it).
    page.goto(served.url.replace("localhost", "127.0.0.1") + "/wallet")
    elsewhere = page.locator("#elsewhere")
    elsewhere.wait_for()
    assert elsewhere.get_by_role("link").get_attribute("href") == f"{served.url}/wallet"
    assert page.locator("#signin").is_hidden()
    # The pages' files come from an allow-list, nothing else from the file system.
    assert served.http.get("/assets/common.js").headers["content-type"].startswith("text/javascript")
    assert served.http.get("/assets/..%2Fpages.py").status_code == 404
    assert served.http.get("/assets/wallet.html").status_code == 404
    watched.assert_clean()


# --------------------------------------------------------------------------- the member wallet


def test_sign_in_with_ethereum_shows_the_wallet_the_api_serves(
    served: Served, context: BrowserContext
) -> None:
    service = served.service
    member = service.people[1]  # member A: self custody, enrolled by partner A
    # A session cookie that no longer works (expired) does not stand in the way of signing in again.
    host = served.url.removeprefix("http://").split(":")[0]
    context.add_cookies(
        [{"name": "loyalty_session", "value": service.tokens["expired"], "domain": host, "path": "/"}]
    )
    signed = add_test_wallet(context, member)
    watched = watch(context)
    page = watched.page
    page.goto("/wallet")
    page.get_by_role("button", name="Sign in with Ethereum").click()
    page.locator("#wallet").wait_for()
    balance = shown(page, "#balance")
    # The wallet signed one EIP-4361 message naming the service's origin and its checksummed address.
    assert len(signed) == 1
    assert signed[0].startswith(f"{served.url.removeprefix('http://')} wants you to sign in")
    assert f"\n{member.address}\n" in signed[0] and f"URI: {served.url}" in signed[0]

    wallet = served.get("member_a", f"/v1/wallets/{member.address}")
    assert int(balance) == wallet["balance"] > 0
    assert page.locator("#tier-name").inner_text() == wallet["tier"]["name"]
    tier_bar = page.locator("#tier-bar")
    assert int(tier_bar.get_attribute("value") or -1) == wallet["tier"]["qualifying_points"]
    assert int(shown(page, "#points-away")) == wallet["next_reward"]["points_away"]
    assert wallet["next_reward"]["name"] in page.locator("#next-reward").inner_text()
    pending = served.get("member_a", "/v1/operations?state=pending")["data"]
    assert int(shown(page, "#pending-total")) == sum(op["points"] for op in pending) > 0
    lots = page.locator("#expiry-lots tbody tr")
    assert lots.count() == len(wallet["epochs"])
    assert page.locator("#rewards-table tbody tr").count() == len(REWARDS)
    assert page.locator("#redeem").is_hidden() and page.locator("#self-custody").is_visible()

    # History: every entry of the API's, with the links from a return to what it took back ...
    history = served.get("member_a", f"/v1/wallets/{member.address}/history?limit=25")["data"]
    parts = {"PointsReversed", "PointsRefunded"}
    rows = page.locator("#history-table tbody tr")
    assert [int(s) for s in rows.evaluate_all("rows => rows.map(r => r.dataset.seq)")] == [
        e["seq"] for e in history if e["kind"] not in parts
    ]
    ret = next(e for e in history if e["kind"] == "IssuanceReversed")
    assert int(shown(page, f"#entry-{ret['seq']} td:nth-child(4)")) == -ret["recovered"]
    page.locator(f"#entry-{ret['seq']} a[href='#entry-{ret['original_seq']}']").click()
    page.wait_for_url(f"**#entry-{ret['original_seq']}")
    assert "target" in (page.locator(f"#entry-{ret['original_seq']}").get_attribute("class") or "")
    # ... and to each transaction.
    tx = history[0]["tx_hash"]
    page.locator(f"#entry-{history[0]['seq']} a[href='#tx-{tx}']").click()
    page.locator("#tx").wait_for()
    assert page.locator(f"#tx-detail code[data-value='{tx}']").is_visible()
    watched.assert_clean()


def test_a_passkey_and_a_redemption_code_used_at_the_till(served: Served, context: BrowserContext) -> None:
    service = served.service
    enrolled = served.post("partner_a", "/v1/members", {"customer_id": f"web-{secrets.token_hex(4)}"})
    member_id, address = enrolled["id"], enrolled["address"]
    link = enrolled["enrolment"]["url"]
    assert link.startswith(f"{served.url}/enrol#")
    issue(service, address, 120)

    watched = watch(context)
    page = watched.page
    authenticator = add_authenticator(page)
    # The enrolment link: a passkey is made on this device, and the member is signed in.
    page.goto(link)
    page.get_by_role("button", name="Create a passkey").click()
    page.locator("#wallet").wait_for()
    assert int(shown(page, "#balance")) == 120
    assert page.url == f"{served.url}/wallet"  # the used link's token left the address bar
    [passkey] = authenticator.credentials()
    assert passkey["isResidentCredential"] and passkey["rpId"] == "localhost"
    # Signed out, then in again with the passkey alone (discoverable: no user name typed).
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.locator("#who-method").filter(has_text="passkey").wait_for()
    assert int(shown(page, "#balance")) == 120
    assert authenticator.credentials()[0]["signCount"] > passkey["signCount"]

    # A code for partner A, up to 50 points: digits and a QR code.
    page.get_by_label("Partner").select_option(label="Bean There Coffee")
    page.get_by_label("Up to (points)").fill("50")
    page.get_by_role("button", name="Create a code").click()
    code = shown(page, "#code-digits")
    assert re.fullmatch(r"[0-9]{10}", code)
    qr = page.locator("#code-qr")
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    assert page.evaluate("document.getElementById('code-qr').naturalWidth") > 0  # the SVG decoded
    screenshot(page, "wallet.png")

    # The till: partner A's key submits the code the member showed; the batcher sends it; the mirror follows.
    till = {"member": {"member_id": member_id}, "code": code, "amount": 45, "redemption_id": "till-web-1"}
    redemption = served.post("partner_a", "/v1/redemptions", till)
    send_outbox(service)
    assert served.get("partner_a", f"/v1/operations/{redemption['id']}")["state"] == "confirmed"
    page.get_by_role("button", name="Refresh").click()
    page.locator("#balance [data-value='75']").wait_for()
    wallet = served.get("partner_a", f"/v1/members/{member_id}/wallet")
    assert int(shown(page, "#balance")) == wallet["balance"] == 75
    assert "used" in page.locator("#codes-table tbody tr").first.inner_text()
    assert page.locator("#history-table tbody tr").first.get_attribute("data-kind") == "PointsRedeemed"
    watched.assert_clean()


# --------------------------------------------------------------------------- the partner dashboard


def test_the_partner_dashboard_shows_the_apis_figures(served: Served, context: BrowserContext) -> None:
    hook_url = "https://crm.example.com/loyalty/events"
    created = served.http.post(
        f"/v1/partners/{ACTIVE}/webhooks",
        headers=served.service.headers("partner_a"),
        json={"url": hook_url, "events": ["points.issued", "points.expiring"]},
    )
    assert created.status_code in (201, 404), created.text  # 404: a service without webhooks
    watched = watch(context)
    page = watched.page
    page.goto("/partner")
    sign_in_with_key(page, served.service.tokens["partner_a"])
    page.locator("#dashboard").wait_for()

    position = served.get("partner_a", f"/v1/partners/{ACTIVE}/position")["points"]
    for field in ("issued", "reversed", "redeemed", "refunded", "settled", "position", "open"):
        assert int(shown(page, f"#fig-{field} dd")) == position[field], field
    stats = served.get("partner_a", f"/v1/stats?partner={ACTIVE}")
    assert int(shown(page, "#fig-expired dd")) == stats["totals"]["expired"]
    assert "Bean There Coffee" in page.locator("#partner-name").inner_text()

    # Over time: the charts' data tables hold the API's periods, and the open position accumulates.
    period = page.locator("#period").input_value()
    periods = served.get("partner_a", f"/v1/partners/{ACTIVE}/position?period={period}")["periods"]
    charts = page.locator("figure.chart")
    assert charts.count() == 2
    for i in range(2):
        graphic = charts.nth(i).locator("svg[role='img']")
        assert graphic.get_attribute("aria-labelledby") and graphic.get_attribute("aria-describedby")
        assert charts.nth(i).locator("details tbody tr").count() == len(periods)
    last_open = charts.nth(1).locator("details tbody tr").last.locator("[data-value]")
    assert int(last_open.get_attribute("data-value") or 0) == sum(p["points"]["open"] for p in periods)
    statements = page.locator("#statements-table tbody tr")
    assert statements.count() == 1 + min(12, len(periods))
    whole = served.get("partner_a", f"/v1/partners/{ACTIVE}/statement")
    first = page.locator("#statements-table tbody tr").first
    assert int(shown(page, "#statements-table tbody tr:first-child td:nth-child(2)")) == whole["issued_net"]
    [total] = whole["totals"]
    assert f"EUR {total['due_from_partner']}" in first.inner_text().replace(",", "")

    operations = served.get("partner_a", "/v1/operations?limit=25")["data"]
    assert page.locator("#operations-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.op)") == [
        op["id"] for op in operations
    ]
    rule_sets = served.get("partner_a", f"/v1/partners/{ACTIVE}/rule-sets")["data"]
    assert page.locator("#rules-active").get_attribute("data-hash") == next(
        r["hash"] for r in rule_sets if r["active"]
    )

    # The quote tester answers what POST /v1/quotes answers.
    page.get_by_label("Amount paid (cents)").fill("2450")
    page.get_by_role("button", name="Add a line").click()
    page.get_by_label("SKU (line 1)").fill("BEANS-1KG")
    page.get_by_label("Category").fill("coffee")
    page.get_by_label("Unit price (cents)").fill("2450")
    page.get_by_role("button", name="Quote", exact=True).click()
    order = {
        "channel": "pos",
        "currency": "EUR",
        "amount": 2450,
        "lines": [{"sku": "BEANS-1KG", "category": "coffee", "quantity": 1, "unit_price": 2450}],
    }
    quote = served.post("partner_a", "/v1/quotes", order, status=200)
    assert int(shown(page, "#quote-points")) == quote["points"] > 0
    assert page.locator("#quote-steps tbody tr").count() == len(quote["lines"])

    members = served.get("partner_a", "/v1/members?limit=50")["data"]
    assert page.locator("#members-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.member)"
    ) == [m["id"] for m in members]
    me = served.get("partner_a", "/v1/api-key")
    assert "this key" in page.locator(f"#keys-table tr[data-key='{me['id']}']").inner_text()
    if created.status_code == 201:
        row = page.locator(f"#webhooks-table tr[data-webhook='{created.json()['id']}']")
        assert hook_url in row.inner_text()
    else:
        assert page.locator("#webhooks-empty").is_visible()
    screenshot(page, "partner.png")
    watched.assert_clean()


# --------------------------------------------------------------------------- the audit explorer


def test_the_explorer_shows_the_head_supply_and_entries_the_api_serves(
    served: Served, context: BrowserContext
) -> None:
    watched = watch(context)
    page = watched.page
    page.goto("/explorer")
    sign_in_with_key(page, served.service.tokens["auditor"])
    page.locator("#explorer").wait_for()

    head = served.get("auditor", "/v1/audit/head")
    assert int(shown(page, "#head-mirror-seq")) == head["mirror"]["seq"]
    assert shown(page, "#head-mirror-head") == head["mirror"]["head"]
    assert shown(page, "#head-chain-at-mirror-head") == head["chain_at_mirror_block"]["head"]
    assert int(shown(page, "#head-chain-latest-seq")) == head["chain_latest"]["seq"]
    assert head["matches"] and "matches the chain" in page.locator("#head-verdict").inner_text()
    reconciliation = served.get("auditor", "/v1/audit/reconciliation")
    page.locator("#recon-verdict").wait_for()
    assert page.locator("#recon-verdict").get_attribute("data-ok") == str(reconciliation["ok"]).lower()
    supply = served.get("auditor", "/v1/audit/supply")["now"]
    assert int(shown(page, "#supply-live dd")) == supply["outstanding_supply"]
    assert int(shown(page, "#supply-liability dd")) == supply["liability_value"]
    assert int(shown(page, "#supply-issued dd")) == supply["total_issued"]

    entries = served.get("auditor", "/v1/audit/entries?limit=25")["data"]
    seqs = "rows => rows.map(r => Number(r.dataset.seq))"
    page.locator("#entries-table").wait_for()
    assert page.locator("#entries-table tbody tr").evaluate_all(seqs) == [e["seq"] for e in entries]
    # A filter, and the export of what it selects.
    page.get_by_label("Kind").select_option("PointsRedeemed")
    page.get_by_role("button", name="Apply filters").click()
    redeemed = served.get("auditor", "/v1/audit/entries?kind=PointsRedeemed")["data"]
    shown_count = f"{len(redeemed)} {'entry' if len(redeemed) == 1 else 'entries'} shown"
    page.locator("#entries-as-of").filter(has_text=shown_count).wait_for()
    assert page.locator("#entries-table tbody tr").evaluate_all(seqs) == [e["seq"] for e in redeemed]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("seq,block_number,") and len(lines) == 1 + len(redeemed)
    assert "no timelock" in page.locator("#admin-ops").inner_text()
    screenshot(page, "explorer.png")
    watched.assert_clean()


# --------------------------------------------------------------------------- accessibility and phones


def _signed_in(page: Page, served: Served, path: str) -> None:
    """``path`` with its content: the wallet with member A's session cookie, the others with a key."""
    page.goto(path)
    if path == "/partner":
        sign_in_with_key(page, served.service.tokens["partner_a"])
        page.locator("#members-table").wait_for()
    elif path == "/explorer":
        sign_in_with_key(page, served.service.tokens["auditor"])
        page.locator("#entries-table").wait_for()
        page.locator("#supply figure.chart").first.wait_for()
    elif path == "/wallet":
        page.locator("#history-table").wait_for()


def _member_cookie(ctx: BrowserContext, served: Served, token: str | None = None) -> None:
    """Signs the profile in as a member: member A's session (or ``token``) as the session cookie."""
    host = served.url.removeprefix("http://").split(":")[0]
    value = token or served.service.tokens["member_a"]
    ctx.add_cookies([{"name": "loyalty_session", "value": value, "domain": host, "path": "/"}])


def _custodial_session(served: Served) -> str:
    """A new custodial member of partner A holding points, and a passkey session of theirs (its token)."""
    enrolled = served.post("partner_a", "/v1/members", {"customer_id": f"axe-{secrets.token_hex(4)}"})
    issue(served.service, enrolled["address"], 60)
    services = served.service.services
    with services.session() as db:
        issued, _ = open_session(db, enrolled["id"], "passkey", now=services.now(), ttl_s=3600)
    return issued.token


def test_axe_finds_no_serious_violation_on_any_page(served: Served, browser: Browser) -> None:
    # axe is injected as an inline script, which the pages' policy refuses: this profile bypasses it.
    with new_context(browser, served, bypass_csp=True) as ctx:
        page = ctx.new_page()
        checked: dict[str, list[str]] = {}
        for path in ("/", "/wallet", "/partner", "/explorer"):  # signed out: the sign-in forms
            page.goto(path)
            page.locator("main h1").wait_for()
            page.wait_for_load_state("networkidle")
            checked[f"{path} (signed out)"] = _axe(page)
        _member_cookie(ctx, served)
        for path in ("/wallet", "/partner", "/explorer"):
            _signed_in(page, served, path)
            checked[path] = _axe(page)
        # A custodial member's wallet, with its redemption code form and a code shown.
        _member_cookie(ctx, served, _custodial_session(served))
        _signed_in(page, served, "/wallet")
        page.get_by_role("button", name="Create a code").click()
        page.locator("#code-qr").wait_for()
        checked["/wallet (custodial, a code shown)"] = _axe(page)
    assert checked == {name: [] for name in checked}


def _axe(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (one line each)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in REFUSED_IMPACTS
    ]


def test_every_page_fits_a_phone(served: Served, browser: Browser) -> None:
    with new_context(browser, served, viewport=PHONE, is_mobile=True, has_touch=True) as ctx:
        _member_cookie(ctx, served)
        watched = watch(ctx)
        page = watched.page
        widths = {}
        for path in ("/", "/wallet", "/partner", "/explorer"):
            _signed_in(page, served, path)
            # Nothing is wider than the screen: wide tables scroll inside their own regions.
            widths[path] = page.evaluate("document.documentElement.scrollWidth")
            if path == "/wallet":
                screenshot(page, "wallet-phone.png")
        assert widths == {path: PHONE["width"] for path in widths}
        watched.assert_clean()
