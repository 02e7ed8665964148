// The partner dashboard (/partner), signed in with the partner's API key (kept in sessionStorage, sent as a
// bearer token). Every figure is one of the API's: the position (/v1/partners/{id}/position), breakage
// (/v1/stats), statements (/v1/partners/{id}/statement), operations, rule sets and quotes, members, keys and
// webhooks. The open position over time is the running sum of each period's open position.

import {
  $,
  ApiError,
  api,
  badge,
  chart,
  decimal,
  el,
  explain,
  figure,
  fill,
  hashEl,
  keySignIn,
  num,
  periodFor,
  say,
  show,
  stateBadge,
  table,
  timeEl,
  when,
} from "./common.js";

const STATEMENTS_SHOWN = 12;
const state = { token: null, key: null, partnerId: null, range: null, membersCursor: null, members: [], lines: 0 };

function get(path) {
  return api(path, { token: state.token });
}

const signOut = keySignIn({ slot: "partner", roles: ["partner"], start });

async function start(token, key) {
  state.token = token;
  state.key = key;
  state.partnerId = key.partner_id;
  show("dashboard", true);
  $("signout").addEventListener("click", signOut);
  fill("key-prefix", `${key.prefix}…`);
  fill("partner-id", String(key.partner_id));
  const partner = await get(`/v1/partners/${state.partnerId}`);
  fill("partner-name", partner.name);
  fill("partner-status", badge(partner.status, partner.status === "active" ? "ok" : "warn"));
  fill("as-of", `As of block ${num(partner.as_of.block_number)}, ${when(partner.as_of.time)}.`);
  $("period-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadFlows($("period").value).catch(failed);
  });
  $("ops-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadOperations().catch(failed);
  });
  $("quote-form").addEventListener("submit", quote);
  $("q-add-line").addEventListener("click", () => addLine());
  $("members-more").addEventListener("click", () => loadMembers().catch(failed));
  const results = await Promise.allSettled([
    loadPosition(),
    loadOperations(),
    loadRules(),
    loadMembers(),
    loadKeys(),
    loadWebhooks(),
  ]);
  const problem = results.find((r) => r.status === "rejected");
  if (problem) failed(problem.reason);
}

function failed(error) {
  say("status", explain(error), "error");
}

// ------------------------------------------------------------------------------------------ position

function figureBox(label, points, value, id) {
  return el(
    "div",
    { id },
    el("dt", {}, label),
    el("dd", {}, figure(points), value === undefined ? null : el("small", {}, "value ", num(value))),
  );
}

async function loadPosition() {
  const [position, stats] = await Promise.all([
    get(`/v1/partners/${state.partnerId}/position`),
    get(`/v1/stats?partner=${state.partnerId}`),
  ]);
  state.range = { start: position.start, end: position.end };
  const p = position.points;
  const v = position.value;
  fill(
    "position",
    el(
      "dl",
      { class: "figures" },
      figureBox("Issued", p.issued, v.issued, "fig-issued"),
      figureBox("Reversed (returns)", p.reversed, v.reversed, "fig-reversed"),
      figureBox("Redeemed with you", p.redeemed, v.redeemed, "fig-redeemed"),
      figureBox("Refunded", p.refunded, v.refunded, "fig-refunded"),
      figureBox("Expired (your share)", stats.totals.expired, undefined, "fig-expired"),
      figureBox("Settled", p.settled, v.settled, "fig-settled"),
      figureBox("Position", p.position, v.position, "fig-position"),
      figureBox("Open position", p.open, v.open, "fig-open"),
    ),
    el(
      "p",
      { class: "hint" },
      `Outstanding points of yours: ${num(stats.totals.outstanding_points)}; redemption rate `,
      stats.totals.redemption_rate === null ? "–" : `${(stats.totals.redemption_rate * 100).toFixed(1)} %`,
      `; ${num(stats.totals.active_members_30d)} members active in the last 30 days.`,
    ),
  );
  const period = periodFor(position.end - position.start);
  $("period").value = period;
  await loadFlows(period);
}

async function loadFlows(period) {
  const query = `period=${period}&from=${state.range.start}&to=${state.range.end}`;
  const [position, stats] = await Promise.all([
    get(`/v1/partners/${state.partnerId}/position?${query}`),
    get(`/v1/stats?partner=${state.partnerId}&${query}`),
  ]);
  const periods = position.periods;
  const expired = new Map(stats.periods.map((s) => [s.label, s.expired]));
  const labels = periods.map((x) => x.label);
  let running = 0;
  let runningValue = 0;
  const open = periods.map((x) => (running += x.points.open));
  const openValue = periods.map((x) => (runningValue += x.value.open));
  fill(
    "flows",
    chart({
      title: "Points issued, reversed, redeemed and expired per period",
      summary: `${labels.length} periods from ${labels[0] || "–"} to ${labels[labels.length - 1] || "–"}: ${num(position.points.issued)} issued, ${num(position.points.reversed)} reversed, ${num(position.points.redeemed)} redeemed.`,
      labels,
      series: [
        { name: "Issued", values: periods.map((x) => x.points.issued), cls: "s1" },
        { name: "Reversed", values: periods.map((x) => x.points.reversed), cls: "s2" },
        { name: "Redeemed", values: periods.map((x) => x.points.redeemed), cls: "s3" },
        { name: "Expired", values: labels.map((l) => expired.get(l) ?? 0), cls: "s4" },
      ],
    }),
  );
  fill(
    "open-chart",
    chart({
      title: "Open position at the end of each period (points)",
      summary: `The open position went from ${num(open[0] ?? 0)} to ${num(open[open.length - 1] ?? 0)} points (${num(openValue[openValue.length - 1] ?? 0)} in settlement value); positive means the coalition owes you.`,
      labels,
      kind: "lines",
      series: [{ name: "Open position", values: open, cls: "s5" }],
    }),
  );
  await loadStatements(periods);
}

// ------------------------------------------------------------------------------------------ statements

function money(totals) {
  if (!totals.length) return ["no price set", "", ""];
  const pick = (field) => totals.map((t) => `${t.currency} ${decimal(t[field])}`).join(", ");
  return [pick("due_from_partner"), pick("due_to_partner"), pick("margin")];
}

async function loadStatements(periods) {
  const shown = periods.slice(-STATEMENTS_SHOWN).reverse();
  const base = `/v1/partners/${state.partnerId}/statement`;
  const [whole, ...each] = await Promise.all([
    get(base),
    ...shown.map((x) => get(`${base}?from=${x.start}&to=${x.end}`)),
  ]);
  const row = (label, s) => {
    const [from, to, margin] = money(s.totals);
    return {
      data: { start: s.start, end: s.end },
      cells: [
        label,
        figure(s.issued_net),
        figure(s.redeemed_net),
        figure(s.breakage),
        from,
        to,
        margin,
        s.unpriced_issued_net || s.unpriced_redeemed_net
          ? `${num(s.unpriced_issued_net)} issued / ${num(s.unpriced_redeemed_net)} redeemed`
          : "–",
      ],
    };
  };
  fill(
    "statements",
    table(
      "Settlement statement per period (newest first) and for all time",
      [
        { label: "Period", header: true },
        { label: "Issued net", num: true },
        { label: "Redeemed net", num: true },
        { label: "Breakage", num: true },
        { label: "You pay" },
        { label: "You are paid" },
        { label: "Operator's margin" },
        { label: "Without a price" },
      ],
      [row("All time", whole), ...each.map((s, i) => row(shown[i].label, s))],
      { id: "statements-table" },
    ),
  );
}

// ------------------------------------------------------------------------------------------ operations

async function loadOperations() {
  const wanted = $("ops-state").value;
  const { data } = await get(`/v1/operations?limit=25${wanted ? `&state=${wanted}` : ""}`);
  fill(
    "operations",
    table(
      "Your latest operations, newest first",
      [
        { label: "Operation" },
        { label: "Kind" },
        { label: "For" },
        { label: "State" },
        { label: "Points", num: true },
        { label: "Member" },
        { label: "Created" },
        { label: "Transaction" },
      ],
      data.map((op) => ({
        data: { op: op.id },
        cells: [
          el("code", {}, op.id),
          op.kind,
          op.natural_key,
          [stateBadge(op.state), op.failure && op.failure.reason ? ` ${op.failure.reason}` : ""],
          figure(op.points),
          hashEl(op.address),
          timeEl(op.created_at),
          op.tx_hash ? hashEl(op.tx_hash) : op.state === "pending" ? ["releases ", timeEl(op.release_at, false)] : "–",
        ],
      })),
      { id: "operations-table", empty: "No operations in this state." },
    ),
  );
}

// ------------------------------------------------------------------------------------------ rules and quotes

function describeRules(rules) {
  const items = [];
  const earn = rules.earn;
  if (earn.basis === "points_per_unit") {
    items.push(`Points per unit paid: ${Object.entries(earn.rates).map(([c, r]) => `${r} per ${c}`).join(", ")}`);
  } else {
    items.push(`Cash back ${earn.percent} %, at ${Object.entries(earn.points_per_unit).map(([c, r]) => `${r} points per ${c}`).join(", ")}`);
  }
  items.push(`Rounding: ${rules.rounding}`);
  const categories = Object.entries(rules.categories || {});
  if (categories.length) items.push(`Category multipliers: ${categories.map(([k, m]) => `${k} ×${m}`).join(", ")}`);
  const tiers = Object.entries(rules.tiers || {});
  if (tiers.length) items.push(`Tier multipliers: ${tiers.map(([k, m]) => `${k} ×${m}`).join(", ")}`);
  if ((rules.campaigns || []).length) items.push(`Campaigns: ${rules.campaigns.map((c) => c.name).join(", ")}`);
  const caps = Object.entries(rules.caps || {}).filter(([, v]) => v !== null);
  if (caps.length) items.push(`Caps: ${caps.map(([k, v]) => `${num(v)} per ${k}`).join(", ")}`);
  items.push(rules.pending_days ? `Purchase points pending for ${rules.pending_days} days` : "Purchase points released at once");
  return el("ul", {}, items.map((t) => el("li", {}, t)));
}

async function loadRules() {
  const { data } = await get(`/v1/partners/${state.partnerId}/rule-sets`);
  const active = data.find((r) => r.active);
  fill(
    "rules",
    active
      ? [
          el(
            "p",
            { id: "rules-active", data: { hash: active.hash } },
            `Version ${active.version}, in force since `,
            timeEl(active.activated_at),
            ". Rule hash ",
            hashEl(active.hash),
            " (",
            el("a", { href: `/v1/rules/${active.hash}` }, "its published text"),
            ").",
          ),
          describeRules(active.rules),
          el(
            "details",
            {},
            el("summary", {}, "The rule set exactly as hashed"),
            el("pre", { class: "mono hash" }, active.canonical),
          ),
        ]
      : el("p", { class: "empty" }, "No rule set is in force: purchases cannot earn points until one is activated."),
    data.length > 1
      ? table(
          "Every version",
          [{ label: "Version", num: true }, { label: "Hash" }, { label: "Created" }, { label: "In force" }],
          data.map((r) => [num(r.version), hashEl(r.hash), timeEl(r.created_at), r.active ? badge("in force", "ok") : "–"]),
        )
      : null,
  );
  if (active) {
    const currencies = Object.keys(active.rules.earn.rates || active.rules.earn.points_per_unit || {});
    if (currencies.length) $("q-currency").value = currencies[0];
  }
}

function addLine() {
  state.lines += 1;
  const n = state.lines;
  const field = (id, label, props) =>
    el("div", { class: "field" }, el("label", { for: `q-${id}-${n}` }, label), el("input", { id: `q-${id}-${n}`, ...props }));
  const row = el(
    "div",
    { class: "line-row", data: { line: n } },
    field("sku", `SKU (line ${n})`, { required: true }),
    field("category", "Category", {}),
    field("qty", "Quantity", { type: "number", min: 1, step: 1, value: 1, required: true }),
    field("price", "Unit price (cents)", { type: "number", min: 0, step: 1, value: 0, required: true }),
    el("button", { type: "button", class: "secondary", onclick: () => row.remove() }, `Remove line ${n}`),
  );
  $("q-lines").append(row);
  row.querySelector("input").focus();
}

async function quote(event) {
  event.preventDefault();
  const body = {
    channel: $("q-channel").value,
    currency: $("q-currency").value.trim().toUpperCase(),
    amount: Number($("q-amount").value),
    lines: [...document.querySelectorAll("#q-lines .line-row")].map((row) => {
      const n = row.dataset.line;
      const line = {
        sku: $(`q-sku-${n}`).value.trim(),
        quantity: Number($(`q-qty-${n}`).value),
        unit_price: Number($(`q-price-${n}`).value),
      };
      const category = $(`q-category-${n}`).value.trim();
      if (category) line.category = category;
      return line;
    }),
  };
  const store = $("q-store").value.trim();
  if (store) body.store = store;
  const customer = $("q-customer").value.trim();
  if (customer) body.member = { customer_id: customer };
  try {
    const q = await api("/v1/quotes", { method: "POST", body, token: state.token });
    fill(
      "quote",
      el(
        "div",
        { class: "card" },
        el("p", { class: "big" }, el("span", { id: "quote-points" }, figure(q.points)), " ", el("small", {}, "points")),
        el(
          "p",
          {},
          `Reason: ${q.reason_label}. `,
          q.release_at > q.at ? ["Pending until ", timeEl(q.release_at), ". "] : "Released at once. ",
          q.capped ? "A cap lowered the points. " : "",
          q.member ? `Member tier: ${q.member.tier}.` : "",
        ),
        table(
          "How the points were computed",
          [{ label: "Step" }, { label: "Detail" }, { label: "Points", num: true }],
          q.lines.map((x) => [x.kind, x.detail, x.points]),
          { id: "quote-steps" },
        ),
      ),
    );
  } catch (error) {
    fill("quote", el("p", { class: "status error", role: "alert" }, `No quote: ${explain(error)}`));
  }
}

// ------------------------------------------------------------------------------------------ members, keys, webhooks

async function loadMembers() {
  const cursor = state.membersCursor ? `&cursor=${state.membersCursor}` : "";
  const page = await get(`/v1/members?limit=50${cursor}`);
  state.members.push(...page.data);
  state.membersCursor = page.next_cursor;
  fill(
    "members",
    el(
      "p",
      {},
      el("strong", { id: "members-count" }, figure(state.members.length)),
      page.next_cursor ? " members shown (more below)." : " members enrolled with you.",
    ),
    table(
      "Members enrolled with you, newest first",
      [{ label: "Customer id" }, { label: "Member" }, { label: "Custody" }, { label: "Wallet" }, { label: "Enrolled" }],
      state.members.map((m) => ({
        data: { member: m.id },
        cells: [
          m.customer_id || "–",
          el("code", {}, m.id),
          m.custody,
          hashEl(m.address),
          m.enrolled_at ? timeEl(m.enrolled_at, false) : "–",
        ],
      })),
      { id: "members-table", empty: "No members are enrolled with you yet." },
    ),
  );
  show("members-more", Boolean(page.next_cursor));
}

async function loadKeys() {
  const { data } = await get(`/v1/partners/${state.partnerId}/api-keys`);
  fill(
    "keys",
    table(
      "Your partner's API keys (never their secrets)",
      [{ label: "Name" }, { label: "Key" }, { label: "Created" }, { label: "Last used" }],
      data.map((k) => ({
        data: { key: k.id },
        cells: [
          [k.name, k.id === state.key.id ? [" ", badge("this key", "ok")] : ""],
          el("code", {}, `${k.prefix}…`),
          timeEl(k.created_at, false),
          k.last_used_at ? timeEl(k.last_used_at) : "never",
        ],
      })),
      { id: "keys-table" },
    ),
    el("p", { class: "hint" }, "The coalition's admin creates, rotates and revokes keys."),
  );
}

async function loadWebhooks() {
  let hooks;
  try {
    hooks = await get(`/v1/partners/${state.partnerId}/webhooks`);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      fill("webhooks", el("p", { class: "empty", id: "webhooks-empty" }, "This service sends no webhooks yet."));
      return;
    }
    throw error;
  }
  const list = hooks.data || [];
  const recent = await Promise.all(
    list.map((h) =>
      get(`/v1/partners/${state.partnerId}/webhooks/${h.id}/deliveries?limit=50`).then(
        (d) => d.data,
        () => null,
      ),
    ),
  );
  const summary = (deliveries) => {
    if (deliveries === null) return "–";
    if (!deliveries.length) return "none yet";
    const counts = {};
    for (const d of deliveries) counts[d.state] = (counts[d.state] || 0) + 1;
    return Object.entries(counts).map(([k, n]) => `${num(n)} ${k}`).join(", ");
  };
  fill(
    "webhooks",
    table(
      "Your webhook subscriptions",
      [{ label: "Endpoint" }, { label: "Events" }, { label: "Created" }, { label: "Recent deliveries" }],
      list.map((h, i) => ({
        data: { webhook: h.id },
        cells: [
          [el("code", { class: "hash" }, h.url), h.description ? el("div", { class: "hint" }, h.description) : null],
          h.events.join(", "),
          timeEl(h.created_at, false),
          summary(recent[i]),
        ],
      })),
      { id: "webhooks-table", empty: "No webhook subscriptions yet: subscribe with POST /v1/partners/{id}/webhooks." },
    ),
  );
}
