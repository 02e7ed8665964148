// The member wallet (/wallet, and /enrol for a custodial member's one-time passkey enrolment link).
//
// Sign-in: a passkey (WebAuthn, /v1/auth/passkeys/*) or Sign-In with Ethereum (/v1/auth/siwe*, signed with
// the browser wallet's personal_sign). Either sets the HttpOnly session cookie; every read below is the
// member's own, with that cookie. Times come from the service (as_of.time), never from this computer's
// clock: the ledger's clock is the one that decides expiry and release.

import {
  $,
  ApiError,
  api,
  badge,
  chart,
  el,
  explain,
  figure,
  fill,
  hashEl,
  month,
  num,
  say,
  show,
  signed,
  table,
  timeEl,
  when,
} from "./common.js";
import { toChecksumAddress, utf8Hex } from "./eth.js";

const HISTORY_PAGE = 25;
/** A referral reward's release time while it waits for the referee's first purchase (earning.py). */
const AWAITING_PURCHASE = 2 ** 62;
/** The parts of a return or refund (one per epoch): their header row says what they did together. */
const PARTS = new Set(["PointsReversed", "PointsRefunded"]);
const KINDS = {
  PointsIssued: "Earned",
  PointsIssuedInBatch: "Earned",
  PointsRedeemed: "Redeemed",
  PointsExpired: "Expired",
  IssuanceReversed: "Return",
  RedemptionRefunded: "Refund",
  PointsTransferred: "Transfer",
  AccountMigrated: "Moved to a new account",
  ConsentRevoked: "Consent revoked",
};

const state = {
  session: null,
  member: null,
  wallet: null,
  partners: new Map(),
  entries: new Map(),
  historyCursor: null,
};

// ------------------------------------------------------------------------------------------ base64url

function fromB64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A PublicKeyCredential as JSON, the way WebAuthn Level 3's toJSON() encodes it (base64url fields). */
function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    response,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
  };
}

// ------------------------------------------------------------------------------------------ sign-in

function enrolmentToken() {
  const token = window.location.hash.slice(1);
  return /^[A-Za-z0-9_-]{20,100}$/.test(token) ? token : null;
}

async function registerPasskey() {
  const token = enrolmentToken();
  if (!token) return;
  const button = $("passkey-register");
  button.disabled = true;
  say("status", "Follow your device's prompt to create the passkey…");
  try {
    const { challenge, options } = await api("/v1/auth/passkeys/registration/options", {
      method: "POST",
      body: { enrolment_token: token },
    });
    const publicKey = {
      ...options,
      challenge: fromB64url(options.challenge),
      user: { ...options.user, id: fromB64url(options.user.id) },
      excludeCredentials: (options.excludeCredentials || []).map((c) => ({ ...c, id: fromB64url(c.id) })),
    };
    const credential = await navigator.credentials.create({ publicKey });
    state.session = await api("/v1/auth/passkeys/registration", {
      method: "POST",
      body: { enrolment_token: token, challenge, credential: credentialJson(credential) },
    });
    // The link is used up: leave it out of the address bar and the history.
    window.history.replaceState(null, "", "/wallet");
    show("enrol", false);
    say("status", "Your passkey is ready; you are signed in.", "ok");
    await load();
  } catch (error) {
    say("status", `The passkey was not created: ${explainCeremony(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function passkeySignIn() {
  const button = $("passkey-signin");
  button.disabled = true;
  say("status", "Follow your device's prompt to use your passkey…");
  try {
    const { challenge, options } = await api("/v1/auth/passkeys/login/options", { method: "POST" });
    const publicKey = {
      ...options,
      challenge: fromB64url(options.challenge),
      allowCredentials: (options.allowCredentials || []).map((c) => ({ ...c, id: fromB64url(c.id) })),
    };
    const credential = await navigator.credentials.get({ publicKey });
    state.session = await api("/v1/auth/passkeys/login", {
      method: "POST",
      body: { challenge, credential: credentialJson(credential) },
    });
    say("status", "Signed in with your passkey.", "ok");
    await load();
  } catch (error) {
    say("status", `Sign-in failed: ${explainCeremony(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

function explainCeremony(error) {
  if (error && error.name === "NotAllowedError") return "the passkey prompt was cancelled or timed out.";
  if (error && error.name === "InvalidStateError") return "this device holds a passkey for you already.";
  return explain(error);
}

/** The EIP-4361 message the service's nonce asks for (no expiry: the nonce itself is single-use and short). */
function siweMessage({ domain, uri, chain_id: chainId, nonce }, address) {
  return [
    `${domain} wants you to sign in with your Ethereum account:`,
    address,
    "",
    "Sign in to your coalition loyalty wallet.",
    "",
    `URI: ${uri}`,
    "Version: 1",
    `Chain ID: ${chainId}`,
    `Nonce: ${nonce}`,
    `Issued At: ${new Date().toISOString()}`,
  ].join("\n");
}

async function siweSignIn() {
  const wallet = window.ethereum;
  if (!wallet) {
    show("siwe-missing", true);
    return;
  }
  const button = $("siwe-signin");
  button.disabled = true;
  say("status", "Confirm the sign-in message in your wallet…");
  try {
    const [account] = await wallet.request({ method: "eth_requestAccounts" });
    const address = toChecksumAddress(account);
    const challenge = await api("/v1/auth/siwe/nonce", { method: "POST" });
    const message = siweMessage(challenge, address);
    const signature = await wallet.request({ method: "personal_sign", params: [utf8Hex(message), address] });
    state.session = await api("/v1/auth/siwe", { method: "POST", body: { message, signature } });
    say("status", "Signed in with Ethereum.", "ok");
    await load();
  } catch (error) {
    say("status", `Sign-in failed: ${explain(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api("/v1/session", { method: "DELETE" });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) throw error;
  }
  window.location.assign("/wallet");
}

// ------------------------------------------------------------------------------------------ the wallet

async function load() {
  show("signin", false);
  show("wallet", true);
  const session = state.session || (await api("/v1/session"));
  state.session = session;
  const address = session.address;
  fill("who-address", address);
  fill("who-method", session.method === "passkey" ? "(passkey)" : "(Sign-In with Ethereum)");
  const [wallet, member, partners, pending, rewards] = await Promise.all([
    api(`/v1/wallets/${address}`),
    api("/v1/me"),
    api("/v1/partners"),
    api("/v1/operations?state=pending&limit=100"),
    api("/v1/rewards?limit=200"),
  ]);
  state.wallet = wallet;
  state.member = member;
  state.partners = new Map(partners.data.map((p) => [p.id, p]));
  renderSummary(wallet);
  renderExpiry(wallet);
  renderPending(pending.data, wallet);
  renderRewards(rewards.data, wallet);
  const custodial = member.custody === "custodial";
  show("redeem", custodial && session.method === "passkey");
  show("self-custody", !custodial);
  if (custodial && session.method === "passkey") {
    renderCodeForm(wallet);
    await renderCodes();
  }
  state.entries.clear();
  state.historyCursor = null;
  fill("history");
  await loadHistory();
  await followHash();
}

function partnerName(id) {
  const partner = state.partners.get(id);
  return partner ? partner.name : `Partner ${id}`;
}

function renderSummary(wallet) {
  const asOf = wallet.as_of;
  fill("as-of", `As of block ${num(asOf.block_number)}, ${when(asOf.time)}.`);
  fill("balance", figure(wallet.balance));
  const expiring = [];
  if (wallet.expiring_30d > 0) {
    expiring.push(el("strong", {}, figure(wallet.expiring_30d)), " points expire within 30 days. ");
  }
  if (wallet.next_expiry_at) {
    expiring.push(`Next: ${num(wallet.next_expiry_points)} points on `, timeEl(wallet.next_expiry_at), ".");
  } else {
    expiring.push("None of your points expire soon.");
  }
  fill("expiring", expiring);

  const tier = wallet.tier;
  fill("tier-name", tier.name);
  const progress = $("tier-progress");
  if (tier.next_tier) {
    const goal = tier.qualifying_points + tier.points_to_next_tier;
    fill(
      progress,
      el("label", { for: "tier-bar" }, `Progress to ${tier.next_tier}`),
      el(
        "progress",
        { id: "tier-bar", max: goal, value: tier.qualifying_points },
        `${num(tier.qualifying_points)} of ${num(goal)}`,
      ),
      el(
        "p",
        {},
        figure(tier.points_to_next_tier),
        ` qualifying points to ${tier.next_tier} (you have ${num(tier.qualifying_points)}).`,
      ),
    );
  } else {
    fill(progress, el("p", {}, `The top tier: ${num(tier.qualifying_points)} qualifying points.`));
  }

  const next = wallet.next_reward;
  fill(
    "next-reward",
    next
      ? [
          "You are ",
          el("strong", { id: "points-away" }, figure(next.points_away)),
          ` points away from ${next.name} at ${partnerName(next.partner_id)}.`,
        ]
      : "Your balance covers every reward in the catalogue.",
  );
  fill(
    "redeemable",
    wallet.redeemable_count
      ? `${num(wallet.redeemable_count)} ${wallet.redeemable_count === 1 ? "reward" : "rewards"} can be redeemed with your balance now.`
      : "",
  );
}

function renderExpiry(wallet) {
  const byMonth = new Map();
  for (const e of wallet.epochs) {
    const d = new Date(e.expires_at * 1000);
    const key = `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
    const row = byMonth.get(key) || { label: month(e.expires_at), points: 0, first: e.expires_at };
    row.points += e.points;
    byMonth.set(key, row);
  }
  const months = [...byMonth.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, v]) => v);
  if (!months.length) {
    fill("expiry", el("p", { class: "empty" }, "You hold no points, so none expire."));
    return;
  }
  const total = months.reduce((s, m) => s + m.points, 0);
  fill(
    "expiry",
    chart({
      title: "Points expiring by month",
      summary: `${num(total)} points expire in the coming ${months.length === 1 ? "month" : `${months.length} months`}; the first ${num(months[0].points)} in ${months[0].label}.`,
      labels: months.map((m) => m.label),
      series: [{ name: "Points expiring", values: months.map((m) => m.points), cls: "s2" }],
      labelHeading: "Month",
    }),
    table(
      "When each lot of points expires",
      [{ label: "Expires" }, { label: "Points", num: true }],
      wallet.epochs.map((e) => [timeEl(e.expires_at), figure(e.points)]),
      { id: "expiry-lots" },
    ),
  );
}

function renderPending(operations, wallet) {
  const rows = operations.filter((op) => op.points > 0 && ["purchase", "engagement", "adjustment"].includes(op.kind));
  const total = rows.reduce((s, op) => s + op.points, 0);
  fill(
    "pending",
    rows.length ? el("p", {}, el("strong", { id: "pending-total" }, figure(total)), " points pending.") : null,
    table(
      "Pending points and when they are released",
      [{ label: "Partner" }, { label: "For" }, { label: "Points", num: true }, { label: "Released" }],
      rows.map((op) => [
        partnerName(op.partner_id),
        `${op.kind} ${op.natural_key}`,
        figure(op.points),
        op.release_at >= AWAITING_PURCHASE
          ? "after your first purchase"
          : [timeEl(op.release_at, false), op.release_at <= wallet.as_of.time ? " (being sent)" : ""],
      ]),
      { id: "pending-table", empty: "No points are pending." },
    ),
  );
}

function renderRewards(rewards, wallet) {
  const sorted = [...rewards].sort((a, b) => a.points_price - b.points_price || a.id - b.id);
  fill(
    "rewards",
    table(
      "The rewards catalogue: what can be redeemed where",
      [{ label: "Reward" }, { label: "Partner" }, { label: "Points", num: true }, { label: "For you" }],
      sorted.map((r) => [
        [el("strong", {}, r.name), r.description ? el("div", { class: "hint" }, r.description) : null],
        r.partner_name || partnerName(r.partner_id),
        figure(r.points_price),
        r.points_price <= wallet.balance
          ? badge("You can redeem this", "ok")
          : badge(`${num(r.points_price - wallet.balance)} more points`, "neutral"),
      ]),
      { id: "rewards-table", empty: "No rewards can be redeemed right now." },
    ),
  );
}

// ------------------------------------------------------------------------------------------ redemption codes

function renderCodeForm(wallet) {
  const select = $("code-partner");
  const accepting = [...state.partners.values()].filter((p) => p.status === "active" && p.can_accept);
  fill(select, accepting.map((p) => el("option", { value: p.id }, p.name)));
  const points = $("code-points");
  if (!points.value) points.value = String(Math.max(1, Math.min(wallet.balance, 100)));
}

async function createCode(event) {
  event.preventDefault();
  const body = {
    partner_id: Number($("code-partner").value),
    max_points: Number($("code-points").value),
    ttl_minutes: Number($("code-ttl").value),
  };
  try {
    const code = await api("/v1/me/redemption-codes", { method: "POST", body });
    const grouped = code.code.replace(/(\d{5})(?=\d)/g, "$1 ");
    const image = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(code.qr_svg)}`;
    fill(
      "code-shown",
      el(
        "div",
        { class: "card code-box" },
        el("img", { class: "qr", src: image, alt: `QR code of redemption code ${grouped}`, id: "code-qr" }),
        el(
          "div",
          {},
          el("h3", {}, "Show this at the till"),
          el("p", { class: "code-digits", id: "code-digits", data: { value: code.code } }, grouped),
          el("p", {}, `Up to ${num(code.max_points)} points at ${partnerName(code.partner_id)}, valid until `, timeEl(code.expires_at), "."),
          el("button", { type: "button", class: "secondary", onclick: () => revokeCode(code.id) }, "Withdraw this code"),
        ),
      ),
    );
    say("status", "Your redemption code is ready.", "ok");
    await renderCodes();
  } catch (error) {
    say("status", `No code was created: ${explain(error)}`, "error");
  }
}

async function revokeCode(id) {
  try {
    await api(`/v1/me/redemption-codes/${id}`, { method: "DELETE" });
    fill("code-shown");
    say("status", "The code was withdrawn: it can no longer be used.", "ok");
  } catch (error) {
    say("status", explain(error), "error");
  }
  await renderCodes();
}

function codeState(code, now) {
  if (code.used_at) return [badge("used", "ok"), ` ${code.operation || ""}`];
  if (code.revoked_at) return badge("withdrawn", "neutral");
  if (code.expires_at <= now) return badge("expired", "neutral");
  return badge("open", "warn");
}

async function renderCodes() {
  const { data } = await api("/v1/me/redemption-codes");
  const now = state.wallet ? state.wallet.as_of.time : 0;
  fill(
    "codes",
    el("h3", {}, "Your recent codes"),
    table(
      "Your redemption codes (the codes themselves are shown only once)",
      [{ label: "Created" }, { label: "Partner" }, { label: "Up to", num: true }, { label: "Valid until" }, { label: "State" }],
      data.slice(0, 10).map((c) => ({
        cells: [timeEl(c.created_at), partnerName(c.partner_id), figure(c.max_points), timeEl(c.expires_at), codeState(c, now)],
        data: { code: c.id },
      })),
      { id: "codes-table", empty: "You have not created a code yet." },
    ),
  );
}

// ------------------------------------------------------------------------------------------ history

function delta(entry) {
  const me = state.session.address.toLowerCase();
  switch (entry.kind) {
    case "PointsIssued":
    case "PointsIssuedInBatch":
      return entry.amount;
    case "PointsRedeemed":
    case "PointsExpired":
      return -entry.amount;
    case "IssuanceReversed":
      return -entry.recovered;
    case "RedemptionRefunded":
      return entry.refunded;
    case "PointsTransferred":
    case "AccountMigrated":
      return entry.counterparty && entry.counterparty.toLowerCase() === me ? entry.amount : -entry.amount;
    default:
      return null;
  }
}

function entryLink(seq, text) {
  return el("a", { href: `#entry-${seq}` }, text || `entry ${seq}`);
}

function details(entry) {
  const parts = [];
  if (entry.kind === "IssuanceReversed") {
    parts.push(
      "Return of ",
      entryLink(entry.original_seq, `the points earned in entry ${entry.original_seq}`),
      `: ${num(entry.returned)} asked back, ${num(entry.recovered)} taken back.`,
    );
  } else if (entry.kind === "RedemptionRefunded") {
    parts.push(
      "Refund of ",
      entryLink(entry.original_seq, `the redemption in entry ${entry.original_seq}`),
      entry.restored !== entry.refunded ? ` (${num(entry.restored)} live again; the rest had expired).` : ".",
    );
  } else if (entry.undone_by && entry.undone_by.length) {
    const noun = entry.kind === "PointsRedeemed" ? "Refunded" : "Returned";
    parts.push(`${noun}: `);
    entry.undone_by.forEach((seq, i) => parts.push(i ? ", " : "", entryLink(seq)));
    parts.push(".");
  }
  if (entry.kind === "PointsTransferred" || entry.kind === "AccountMigrated") {
    const incoming = delta(entry) > 0;
    parts.push(incoming ? "From another account." : "To ", incoming ? "" : hashEl(entry.counterparty));
  }
  if (entry.order_ref && ["PointsIssued", "PointsIssuedInBatch", "PointsRedeemed"].includes(entry.kind)) {
    parts.push(el("div", { class: "hint" }, "Order reference ", hashEl(entry.order_ref)));
  }
  return parts.length ? parts : "–";
}

/** A link to the transaction panel; its name holds the hash as shown (shortened), and says what it is. */
function txLink(txHash) {
  const short = hashEl(txHash);
  return el("a", { href: `#tx-${txHash}`, "aria-label": `Transaction ${short.textContent}` }, short);
}

function historyRow(entry) {
  const change = delta(entry);
  const what = [KINDS[entry.kind] || entry.kind];
  if (entry.reason_label && (entry.kind === "PointsIssued" || entry.kind === "PointsIssuedInBatch")) {
    what.push(` · ${entry.reason_label}`);
  }
  return {
    id: `entry-${entry.seq}`,
    data: { seq: entry.seq, kind: entry.kind },
    cells: [
      timeEl(entry.block_timestamp),
      what.join(""),
      entry.partner_name || (entry.partner_id !== null ? partnerName(entry.partner_id) : "–"),
      change === null ? "–" : { cell: figure(change, signed(change)), cls: change > 0 ? "plus" : change < 0 ? "minus" : "" },
      details(entry),
      {
        cell: txLink(entry.tx_hash),
        cls: "tx",
      },
    ],
  };
}

async function loadHistory() {
  const cursor = state.historyCursor ? `&cursor=${state.historyCursor}` : "";
  const page = await api(`/v1/wallets/${state.session.address}/history?limit=${HISTORY_PAGE}${cursor}`);
  for (const entry of page.data) if (!PARTS.has(entry.kind)) state.entries.set(entry.seq, entry);
  state.historyCursor = page.next_cursor;
  const all = [...state.entries.values()].sort((a, b) => b.seq - a.seq);
  fill(
    "history",
    table(
      "Every ledger entry of your wallet, newest first",
      [
        { label: "When" },
        { label: "What" },
        { label: "Partner" },
        { label: "Points", num: true },
        { label: "Details" },
        { label: "Transaction" },
      ],
      all.map(historyRow),
      { id: "history-table", empty: "Nothing has happened in your wallet yet." },
    ),
  );
  show("history-more", Boolean(page.next_cursor));
}

/** Follows #entry-<seq> (loading older pages until it is there) and #tx-<hash> (the transaction panel). */
async function followHash() {
  const hash = window.location.hash.slice(1);
  const entry = /^entry-(\d+)$/.exec(hash);
  if (entry) {
    const seq = Number(entry[1]);
    while (!state.entries.has(seq) && state.historyCursor) await loadHistory();
    const row = $(`entry-${seq}`);
    if (row) {
      document.querySelectorAll("tr.target").forEach((r) => r.classList.remove("target"));
      row.classList.add("target");
      row.scrollIntoView({ block: "center" });
    }
    return;
  }
  const tx = /^tx-(0x[0-9a-fA-F]{64})$/.exec(hash);
  if (tx) showTransaction(tx[1]);
}

function showTransaction(txHash) {
  const entries = [...state.entries.values()].filter((e) => e.tx_hash === txHash).sort((a, b) => a.seq - b.seq);
  if (!entries.length) return;
  const first = entries[0];
  fill(
    "tx-detail",
    el(
      "dl",
      { class: "figures" },
      el("div", {}, el("dt", {}, "Block"), el("dd", {}, figure(first.block_number))),
      el("div", {}, el("dt", {}, "Time"), el("dd", {}, el("small", {}, when(first.block_timestamp)))),
      el("div", {}, el("dt", {}, "Chain id"), el("dd", {}, figure(state.wallet.as_of.chain_id))),
    ),
    el("p", {}, "Transaction hash ", hashEl(txHash, { full: true })),
    el("p", { class: "hint" }, "Any node or block explorer of the ledger's chain shows this transaction; its entries in your wallet:"),
    table(
      "Your entries in this transaction",
      [{ label: "Entry", num: true }, { label: "What" }, { label: "Points", num: true }, { label: "Log index", num: true }],
      entries.map((e) => [
        entryLink(e.seq, String(e.seq)),
        KINDS[e.kind] || e.kind,
        delta(e) === null ? "–" : signed(delta(e)),
        num(e.log_index),
      ]),
      { id: "tx-entries" },
    ),
  );
  const panel = $("tx");
  show(panel, true);
  panel.focus();
}

// ------------------------------------------------------------------------------------------ start

/**
 * Passkeys are bound to the service's public origin and Sign-In with Ethereum names it: on another address
 * of the same service (127.0.0.1 for localhost) neither works, so the page says where to go instead.
 */
function atPublicOrigin() {
  const meta = document.querySelector('meta[name="loyalty-public-url"]');
  const expected = meta && meta.content;
  if (!expected || new URL(expected).origin === window.location.origin) return true;
  const there = `${expected}${window.location.pathname}${window.location.hash}`;
  fill(
    "elsewhere",
    "Signing in works only at this service's own address: ",
    el("a", { href: there }, there),
    ". Please open the wallet there.",
  );
  show("elsewhere", true);
  return false;
}

async function start() {
  $("passkey-register").addEventListener("click", registerPasskey);
  $("passkey-signin").addEventListener("click", passkeySignIn);
  $("siwe-signin").addEventListener("click", siweSignIn);
  $("signout").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => load().catch(failed));
  $("history-more").addEventListener("click", () => loadHistory().catch(failed));
  $("code-form").addEventListener("submit", createCode);
  window.addEventListener("hashchange", () => followHash().catch(failed));
  if (!window.ethereum) show("siwe-missing", true);
  if (!atPublicOrigin()) {
    show("signin", false);
    return;
  }

  const enrolling = window.location.pathname === "/enrol" && enrolmentToken();
  if (enrolling) {
    show("enrol", true);
    return;
  }
  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

function failed(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    state.session = null;
    show("wallet", false);
    show("signin", true);
    if (error.status === 401 && error.problem.detail && !/needs credentials/.test(error.problem.detail)) {
      say("status", `Please sign in again: ${error.problem.detail}`);
    }
    return;
  }
  say("status", explain(error), "error");
}

start();
