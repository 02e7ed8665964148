// The audit explorer (/explorer), signed in with an auditor (or admin) API key: the hash-chain head beside
// the contract's (/v1/audit/head), the latest reconciliation, supply and liability over time, every ledger
// entry with filters and exports (/v1/audit/entries, /v1/audit/export), and the timelock's operations.

import {
  $,
  api,
  badge,
  chart,
  date,
  el,
  explain,
  figure,
  fill,
  hashEl,
  keySignIn,
  num,
  say,
  show,
  stateBadge,
  table,
  timeEl,
  when,
} from "./common.js";

/** The ledger's entries (contracts/README.md), for the kind filter. */
const KINDS = [
  "PointsIssued",
  "PointsBatchIssued",
  "PointsIssuedInBatch",
  "PointsRedeemed",
  "PointsExpired",
  "IssuanceReversed",
  "PointsReversed",
  "RedemptionRefunded",
  "PointsRefunded",
  "PointsTransferred",
  "AccountMigrated",
  "ConsentRevoked",
  "PartnerRegistered",
  "PartnerStatusChanged",
  "PartnerAllowanceChanged",
  "PartnerOperatorChanged",
  "PartnerRightsChanged",
  "PartnerSettlementAddressChanged",
  "SettlementValueChanged",
  "SettlementRecorded",
  "TransfersEnabledChanged",
  "RoleChanged",
  "AdminHandoverChanged",
  "PauseChanged",
];
const ENTRIES_PAGE = 25;
const SUPPLY_POINTS = 120;
const state = { token: null, cursor: null, entries: [], partners: new Map() };

function get(path) {
  return api(path, { token: state.token });
}

const signOut = keySignIn({ slot: "auditor", roles: ["auditor", "admin"], start });

async function start(token, key) {
  state.token = token;
  show("explorer", true);
  fill("key-role", `an ${key.role}`);
  fill("key-prefix", `${key.prefix}…`);
  $("signout").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => loadAll().catch(failed));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadEntries(true).catch(failed);
  });
  $("filters").addEventListener("reset", () => setTimeout(() => loadEntries(true).catch(failed)));
  $("entries-more").addEventListener("click", () => loadEntries(false).catch(failed));
  $("export-csv").addEventListener("click", () => exportEntries("csv").catch(failed));
  $("export-jsonl").addEventListener("click", () => exportEntries("jsonl").catch(failed));
  fill($("f-kind"), el("option", { value: "" }, "Any kind"), KINDS.map((k) => el("option", { value: k }, k)));
  const partners = await get("/v1/partners");
  state.partners = new Map(partners.data.map((p) => [p.id, p]));
  fill(
    $("f-partner"),
    el("option", { value: "" }, "Any partner"),
    partners.data.map((p) => el("option", { value: p.id }, `${p.name} (${p.id})`)),
  );
  await loadAll();
}

async function loadAll() {
  const results = await Promise.allSettled([loadHead(), loadReconciliation(), loadSupply(), loadEntries(true), loadAdminOps()]);
  const problem = results.find((r) => r.status === "rejected");
  if (problem) failed(problem.reason);
}

function failed(error) {
  say("status", explain(error), "error");
}

// ------------------------------------------------------------------------------------------ the head

async function loadHead() {
  const head = await get("/v1/audit/head");
  const columns = [head.mirror, head.chain_at_mirror_block, head.chain_latest];
  const names = ["mirror", "chain-at-mirror", "chain-latest"];
  const cell = (i, field, content) => el("span", { id: `head-${names[i]}-${field}` }, content);
  fill(
    "head",
    el(
      "p",
      { id: "head-verdict" },
      head.matches
        ? badge("The mirror matches the chain", "ok")
        : badge("The mirror does not match the chain", "bad"),
      ` The mirror is at block ${num(head.mirror_block)}, the chain at ${num(head.chain_block)} (${num(head.lag_blocks)} behind).`,
    ),
    table(
      "The mirror's head beside the ledger contract's",
      [
        { label: "Figure", header: true },
        { label: "Mirror (rebuilt from the entries)" },
        { label: "Contract at the mirror's block" },
        { label: "Contract now" },
      ],
      [
        ["Block", ...columns.map((c, i) => cell(i, "block", figure(c.block_number)))],
        ["Block hash", ...columns.map((c, i) => cell(i, "block-hash", hashEl(c.block_hash, { full: true })))],
        ["Sequence (entries)", ...columns.map((c, i) => cell(i, "seq", figure(c.seq)))],
        ["Hash-chain head", ...columns.map((c, i) => cell(i, "head", hashEl(c.head, { full: true })))],
      ].map((cells) => ({ cells })),
      { id: "head-table" },
    ),
  );
}

// ------------------------------------------------------------------------------------------ reconciliation

async function loadReconciliation() {
  const r = await get("/v1/audit/reconciliation");
  fill(
    "reconciliation",
    el(
      "p",
      { id: "recon-verdict", data: { ok: r.ok, differences: r.differences.length } },
      r.ok ? badge("No difference", "ok") : badge(`${num(r.differences.length)} differences`, "bad"),
      ` Every figure the mirror serves against the contract's views at block ${num(r.block_number)}; checked `,
      timeEl(r.checked_at),
      r.cached ? " (the comparison at this block)." : ".",
    ),
    r.differences.length
      ? table(
          "Differences between the mirror and the chain",
          [{ label: "Figure" }, { label: "Whose" }, { label: "Mirror" }, { label: "Chain" }],
          r.differences.map((d) => [
            d.what,
            d.key || "–",
            el("code", {}, JSON.stringify(d.mirror)),
            el("code", {}, JSON.stringify(d.chain)),
          ]),
          { id: "recon-table" },
        )
      : null,
  );
}

// ------------------------------------------------------------------------------------------ supply

async function loadSupply() {
  const s = await get(`/v1/audit/supply?max_points=${SUPPLY_POINTS}`);
  const now = s.now;
  const box = (label, value, id) => el("div", { id }, el("dt", {}, label), el("dd", {}, figure(value)));
  const labels = s.points.map((p) => date(p.timestamp));
  const rowLabels = s.points.map((p) => `Block ${num(p.block_number)}, ${when(p.timestamp)}`);
  fill(
    "supply",
    el(
      "dl",
      { class: "figures" },
      box("Live points (outstanding supply)", now.outstanding_supply, "supply-live"),
      box("Expired, not yet swept", now.pending_expiry, "supply-pending-expiry"),
      box("Liability (settlement value)", now.liability_value, "supply-liability"),
      box("Issued", now.total_issued, "supply-issued"),
      box("Redeemed", now.total_redeemed, "supply-redeemed"),
      box("Expired (swept)", now.total_expired, "supply-expired"),
      box("Reversed", now.total_reversed, "supply-reversed"),
      box("Refunded", now.total_refunded, "supply-refunded"),
    ),
    el(
      "p",
      { class: "hint" },
      `As of block ${num(s.as_of.block_number)}, ${when(s.as_of.time)}; a point is worth ${num(s.settlement_value)} settlement units.`,
      s.sampled ? ` The series shows ${num(s.points.length)} of ${num(s.rows)} blocks.` : "",
    ),
    chart({
      title: "Points over time",
      summary: `From ${labels[0] || "–"} to ${labels[labels.length - 1] || "–"}: ${num(now.total_issued)} points issued in all, ${num(now.outstanding)} outstanding now.`,
      labels,
      rowLabels,
      kind: "lines",
      labelHeading: "Block",
      xs: s.points.map((p) => p.timestamp),
      step: true,
      series: [
        { name: "Issued (cumulative)", values: s.points.map((p) => p.total_issued), cls: "s1" },
        { name: "Redeemed (cumulative)", values: s.points.map((p) => p.total_redeemed), cls: "s3" },
        { name: "Expired (cumulative)", values: s.points.map((p) => p.total_expired), cls: "s4" },
        { name: "Outstanding", values: s.points.map((p) => p.outstanding), cls: "s5" },
      ],
    }),
    chart({
      title: "Liability over time (settlement value)",
      summary: `The outstanding points at the current settlement value: ${num(now.liability_value)} units now.`,
      labels,
      rowLabels,
      kind: "lines",
      labelHeading: "Block",
      xs: s.points.map((p) => p.timestamp),
      step: true,
      series: [{ name: "Liability", values: s.points.map((p) => p.liability_value), cls: "s6" }],
    }),
  );
}

// ------------------------------------------------------------------------------------------ entries

function utcDay(text, endOfDay) {
  if (!text) return null;
  const [y, m, d] = text.split("-").map(Number);
  return Date.UTC(y, m - 1, d) / 1000 + (endOfDay ? 86399 : 0);
}

function filterQuery() {
  const params = new URLSearchParams();
  const put = (name, value) => {
    if (value !== null && value !== undefined && String(value).trim() !== "") params.set(name, String(value).trim());
  };
  put("kind", $("f-kind").value);
  put("partner", $("f-partner").value);
  put("account", $("f-account").value);
  put("reason", $("f-reason").value);
  put("from_block", $("f-from-block").value);
  put("to_block", $("f-to-block").value);
  put("from_time", utcDay($("f-from-date").value, false));
  put("to_time", utcDay($("f-to-date").value, true));
  put("order_ref", $("f-order-ref").value);
  return params;
}

function partnerName(id) {
  if (id === null || id === undefined) return "–";
  const partner = state.partners.get(id);
  return partner ? partner.name : `Partner ${id}`;
}

async function loadEntries(fresh) {
  if (fresh) {
    state.cursor = null;
    state.entries = [];
  }
  const params = filterQuery();
  params.set("limit", String(ENTRIES_PAGE));
  if (state.cursor) params.set("cursor", state.cursor);
  const page = await get(`/v1/audit/entries?${params}`);
  state.entries.push(...page.data);
  state.cursor = page.next_cursor;
  fill(
    "entries",
    el("p", { class: "hint", id: "entries-as-of" }, `${num(state.entries.length)} ${state.entries.length === 1 ? "entry" : "entries"} shown, newest first, as of block ${num(page.as_of.block_number)}.`),
    table(
      "Ledger entries matching the filters",
      [
        { label: "Seq", num: true },
        { label: "Time" },
        { label: "Block", num: true },
        { label: "Kind" },
        { label: "Partner" },
        { label: "Account" },
        { label: "Amount", num: true },
        { label: "Transaction" },
        { label: "Head after it" },
      ],
      state.entries.map((e) => ({
        data: { seq: e.seq },
        cells: [
          figure(e.seq),
          timeEl(e.block_timestamp),
          num(e.block_number),
          e.kind,
          partnerName(e.partner_id),
          hashEl(e.account),
          e.amount === null ? "–" : figure(e.amount),
          hashEl(e.tx_hash),
          hashEl(e.head),
        ],
      })),
      { id: "entries-table", empty: "No entry matches these filters." },
    ),
  );
  show("entries-more", Boolean(page.next_cursor));
}

async function exportEntries(format) {
  const params = filterQuery();
  params.set("format", format);
  say("status", `Preparing the ${format === "csv" ? "CSV" : "JSON Lines"} export…`);
  const response = await api(`/v1/audit/export?${params}`, { token: state.token, raw: true });
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `ledger-entries.${format}`;
  const link = el("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  fill(
    "export-note",
    `Downloaded ${name}: the entries as of block ${response.headers.get("X-Mirror-Block")}, up to seq ${response.headers.get("X-Ledger-Seq")}`,
    response.headers.get("X-Ledger-Head") ? [" with head ", hashEl(response.headers.get("X-Ledger-Head"))] : "",
    ". Scripts can fetch the same with curl -H 'Authorization: Bearer …' from ",
    el("code", {}, `/v1/audit/export?${params}`),
    ".",
  );
  say("status", "");
}

// ------------------------------------------------------------------------------------------ admin operations

async function loadAdminOps() {
  const ops = await get("/v1/audit/admin-operations");
  fill(
    "admin-ops",
    ops.timelock
      ? el(
          "p",
          {},
          "Timelock ",
          hashEl(ops.timelock, { full: true }),
          ` with a minimum delay of ${num(ops.min_delay)} seconds: every change that creates issuing power is scheduled here before it takes effect.`,
        )
      : el("p", { class: "hint" }, "This ledger has no timelock: its admin acts directly (a development setup)."),
    table(
      "The timelock's operations, in the order they were scheduled",
      [
        { label: "Operation" },
        { label: "Call" },
        { label: "State" },
        { label: "Executable from" },
        { label: "Scheduled" },
        { label: "Executed or cancelled" },
      ],
      ops.data.map((op) => [
        hashEl(op.operation_id),
        el("code", {}, op.function || op.data.slice(0, 10)),
        [stateBadge(op.status), op.ready ? [" ", badge("ready", "ok")] : ""],
        timeEl(op.ready_at),
        [timeEl(op.scheduled_at), " ", hashEl(op.scheduled_tx)],
        op.executed_tx ? hashEl(op.executed_tx) : op.cancelled_tx ? hashEl(op.cancelled_tx) : "–",
      ]),
      { id: "admin-ops-table", empty: "No admin operation has been scheduled." },
    ),
  );
}
