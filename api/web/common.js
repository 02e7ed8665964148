// What the three pages share: calling the JSON API, building DOM without innerHTML, formatting figures and
// times, tables, and charts drawn as inline SVG with their data as a table beside them (the text
// alternative). No framework and no build step: the browser runs this file as it is served.

/** An API error: the RFC 9457 problem the service answered with. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/**
 * Calls the API. `token`: an API key sent as a bearer token (member pages rely on the session cookie).
 * Answers the parsed JSON (null for 204); throws ApiError for a problem.
 */
export async function api(path, { method = "GET", body, token, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

// ------------------------------------------------------------------------------------------------ DOM

/**
 * An element: `el("a", {href: "/x", class: "b", text: "go"}, child, ...)`. Props starting with "on" are
 * listeners; `text` sets textContent; `data`/`aria` objects set data-* / aria-* attributes; others are
 * attributes (false/null/undefined: left out; true: present).
 */
export function el(tag, props = {}, ...children) {
  return build(document.createElement(tag), props, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, props = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

function build(node, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else if (key === "aria") for (const [k, v] of Object.entries(value)) node.setAttribute(`aria-${k}`, String(v));
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `node` (an element or its id). */
export function fill(node, ...children) {
  const target = typeof node === "string" ? document.getElementById(node) : node;
  target.replaceChildren();
  append(target, children);
  return target;
}

export function $(id) {
  return document.getElementById(id);
}

export function show(id, visible = true) {
  const node = typeof id === "string" ? $(id) : id;
  node.hidden = !visible;
}

/** Writes a message into a status region (role="status" / "alert" in the page). */
export function say(id, message, kind = "") {
  const node = $(id);
  node.className = `status ${kind}`.trim();
  node.textContent = message || "";
}

/** A problem's words for a person: the detail, and what to do for the usual statuses. */
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  const detail = error.message;
  if (error.status === 429) return `Too many requests: ${detail}. Wait a moment and try again.`;
  if (error.status === 503) return `The service is not ready: ${detail}.`;
  return detail;
}

// ------------------------------------------------------------------------------------------------ figures

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** A whole number with grouping (points, blocks); a dash for null. */
export function num(value) {
  if (value === null || value === undefined) return "–";
  return integer.format(value);
}

/** A signed whole number (+12 / −4). */
export function signed(value) {
  if (value > 0) return `+${integer.format(value)}`;
  if (value < 0) return `−${integer.format(-value)}`;
  return "0";
}

/** A decimal string as the API sends prices and amounts, shown with grouping, exactly. */
export function decimal(text) {
  if (text === null || text === undefined) return "–";
  const [whole, fraction] = String(text).split(".");
  const negative = whole.startsWith("-");
  const digits = negative ? whole.slice(1) : whole;
  const grouped = integer.format(BigInt(digits || "0"));
  return `${negative ? "−" : ""}${grouped}${fraction ? `.${fraction}` : ""}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  timeZone: "UTC",
});
const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZone: "UTC",
  timeZoneName: "short",
});
const monthFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", timeZone: "UTC" });

/** Unix seconds as a date (UTC: the ledger's clock). */
export function date(seconds) {
  return seconds === null || seconds === undefined ? "–" : dateFormat.format(new Date(seconds * 1000));
}

export function when(seconds) {
  return seconds === null || seconds === undefined ? "–" : timeFormat.format(new Date(seconds * 1000));
}

export function month(seconds) {
  return monthFormat.format(new Date(seconds * 1000));
}

/** A <time> element for Unix seconds. */
export function timeEl(seconds, withTime = true) {
  if (seconds === null || seconds === undefined) return "–";
  return el("time", { datetime: new Date(seconds * 1000).toISOString(), text: withTime ? when(seconds) : date(seconds) });
}

/** A hash or address, shortened on screen; the whole value in its title and data-value. */
export function hashEl(value, { full = false } = {}) {
  if (!value) return "–";
  const short = !full && value.length > 14;
  const text = short ? `${value.slice(0, 8)}…${value.slice(-6)}` : value;
  return el("code", { class: short ? "hash short" : "hash", title: value, data: { value }, text });
}

/** A figure with its raw value in data-value (what the browser tests compare with the API). */
export function figure(value, text) {
  return el("span", { class: "num", data: { value: value === null || value === undefined ? "" : value } }, text ?? num(value));
}

export function badge(text, kind = "neutral") {
  return el("span", { class: `badge ${kind}` }, text);
}

const STATES = {
  confirmed: "ok",
  failed: "bad",
  cancelled: "neutral",
  pending: "warn",
  accepted: "warn",
  submitted: "warn",
  executed: "ok",
  scheduled: "warn",
};

export function stateBadge(state) {
  return badge(state, STATES[state] || "neutral");
}

// ------------------------------------------------------------------------------------------------ tables

/**
 * A table in a scrollable, focusable region (a wide table scrolls sideways on a phone, by keyboard too).
 * columns: [{label, num?}], rows: arrays of cells (text or nodes), or {cells, id, class}.
 */
let tableCount = 0;

/**
 * A table in a scrollable, focusable region (a wide table scrolls sideways on a phone, by keyboard too).
 * columns: [{label, num?, header?}]; rows: arrays of cells, or {cells, id, class, data}; a cell is text, a
 * node, or {cell, cls} to give its <td> a class.
 */
export function table(caption, columns, rows, { id, empty = "Nothing to show yet." } = {}) {
  if (!rows.length) return el("p", { class: "empty", id }, empty);
  tableCount += 1;
  const captionId = `${id || `table-${tableCount}`}-caption`;
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => {
    const cells = Array.isArray(row) ? row : row.cells;
    const attrs = Array.isArray(row) ? {} : { id: row.id, class: row.class, data: row.data };
    return el(
      "tr",
      attrs,
      cells.map((given, i) => {
        const c = columns[i] || {};
        const wrapped = given !== null && typeof given === "object" && !(given instanceof Node) && "cell" in given;
        const content = wrapped ? given.cell : given;
        const cls = [c.num ? "num" : null, wrapped ? given.cls : null].filter(Boolean).join(" ") || null;
        return c.header ? el("th", { scope: "row", class: cls }, content) : el("td", { class: cls }, content);
      }),
    );
  });
  return el(
    "div",
    { class: "table-wrap", role: "region", tabindex: "0", "aria-labelledby": captionId, id },
    el("table", {}, el("caption", { id: captionId }, caption), el("thead", {}, head), el("tbody", {}, body)),
  );
}

// ------------------------------------------------------------------------------------------------ charts

// Drawn at the width it is shown at (up to 720 px), so its 12 px text stays 12 px on a phone too.
let W = 720;
const H = 260;
const PAD = { left: 64, right: 16, top: 12, bottom: 36 };
let chartCount = 0;

function niceStep(span) {
  const raw = span / 4;
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw) || 10;
  return unit * power;
}

function scaleY(values) {
  const low = Math.min(0, ...values);
  const high = Math.max(0, ...values);
  const step = niceStep(high - low || 1);
  const bottom = Math.floor(low / step) * step;
  const top = Math.ceil(high / step) * step || step;
  const ticks = [];
  for (let t = bottom; t <= top + step / 2; t += step) ticks.push(t);
  const inner = H - PAD.top - PAD.bottom;
  return { y: (v) => PAD.top + inner - ((v - bottom) / (top - bottom)) * inner, ticks };
}

function compact(value) {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${value / 1e9}B`;
  if (abs >= 1e6) return `${value / 1e6}M`;
  if (abs >= 1e4) return `${value / 1e3}k`;
  return integer.format(value);
}

/** Which x-axis labels to print: none repeating the one before, none closer than ~90 px to the last
 * printed (the last label wins over its neighbour). */
function axisLabels(labels, x) {
  const chosen = [];
  labels.forEach((label, i) => {
    const previous = chosen[chosen.length - 1];
    if (previous !== undefined && labels[previous] === label) return;
    if (previous !== undefined && x(i) - x(previous) < 90) {
      if (i !== labels.length - 1) return;
      chosen.pop();
    }
    chosen.push(i);
  });
  return chosen;
}

function frame(scale, labels, x) {
  const parts = [];
  for (const t of scale.ticks) {
    const y = scale.y(t);
    parts.push(svg("line", { class: t === 0 ? "zero" : "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    parts.push(svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, compact(t)));
  }
  for (const i of axisLabels(labels, x)) {
    parts.push(svg("text", { x: x(i), y: H - PAD.bottom + 18, "text-anchor": "middle" }, labels[i]));
  }
  parts.push(svg("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  return parts;
}

function legend(series) {
  return el(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    series.map((s) => el("li", {}, el("span", { class: `swatch ${s.cls}` }), s.name)),
  );
}

function dataTable(title, labels, series, labelHeading) {
  return el(
    "details",
    { class: "data" },
    el("summary", {}, `${title}: the data as a table`),
    table(
      title,
      [{ label: labelHeading, header: true }, ...series.map((s) => ({ label: s.name, num: true }))],
      labels.map((label, i) => [label, ...series.map((s) => figure(s.values[i]))]),
    ),
  );
}

/**
 * A chart as a <figure>: an SVG (role="img", named by the caption and described by a summary) and the same
 * numbers as a table in a <details>. kind "bars": grouped bars per label; "lines": one polyline per series.
 * series: [{name, values, cls: "s1".."s6"}]; labels: the x axis, one per value (rowLabels: the table's, when
 * they say more than fits under the axis); xs: for lines, each value's position (times), else evenly spaced;
 * step: lines as steps (a value holds until the next).
 */
export function chart({
  title,
  summary,
  labels,
  series,
  kind = "bars",
  labelHeading = "Period",
  rowLabels,
  xs,
  step = false,
}) {
  chartCount += 1;
  const id = `chart-${chartCount}`;
  const main = document.querySelector("main");
  W = Math.round(Math.max(300, Math.min(720, (main ? main.clientWidth : 720) - 48)));
  const values = series.flatMap((s) => s.values);
  const scale = scaleY(values.length ? values : [0]);
  const inner = W - PAD.left - PAD.right;
  const n = Math.max(labels.length, 1);
  const band = inner / n;
  let x = (i) => PAD.left + band * (i + 0.5);
  if (kind !== "bars" && xs && xs.length > 1 && xs[xs.length - 1] > xs[0]) {
    const [first, last] = [xs[0], xs[xs.length - 1]];
    x = (i) => PAD.left + (inner * (xs[i] - first)) / (last - first);
  } else if (kind !== "bars") {
    x = (i) => PAD.left + (n === 1 ? inner / 2 : (inner * i) / (n - 1));
  }
  const marks = [];
  if (kind === "bars") {
    const width = Math.min(48, Math.max(2, (band * 0.8) / series.length));
    const group = width * series.length;
    series.forEach((s, k) => {
      s.values.forEach((v, i) => {
        const y0 = scale.y(0);
        const y1 = scale.y(v);
        const left = PAD.left + band * (i + 0.5) - group / 2 + width * k;
        const height = Math.max(Math.abs(y0 - y1), v ? 1 : 0);
        marks.push(svg("rect", { class: s.cls, x: left, y: Math.min(y0, y1), width, height }));
      });
    });
  } else {
    for (const s of series) {
      // A step line holds each value until the next one (cumulative totals change only at their blocks).
      const points = s.values
        .map((v, i) => {
          const here = `${x(i).toFixed(1)},${scale.y(v).toFixed(1)}`;
          return step && i > 0 ? `${x(i).toFixed(1)},${scale.y(s.values[i - 1]).toFixed(1)} ${here}` : here;
        })
        .join(" ");
      marks.push(svg("polyline", { class: `series ${s.cls}`, points }));
      if (!step && s.values.length <= 40) {
        s.values.forEach((v, i) => marks.push(svg("circle", { class: s.cls, cx: x(i), cy: scale.y(v), r: 3 })));
      }
    }
  }
  const graphic = svg(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-labelledby": `${id}-title`,
      "aria-describedby": `${id}-desc`,
      class: "chart",
      focusable: "false",
    },
    frame(scale, labels, x),
    marks,
  );
  return el(
    "figure",
    { class: "chart", id },
    el("figcaption", { id: `${id}-title` }, title),
    el("p", { id: `${id}-desc`, class: "hint" }, summary),
    legend(series),
    graphic,
    dataTable(title, rowLabels || labels, series, labelHeading),
  );
}

// ------------------------------------------------------------------------------------------------ keys

/** A partner's or auditor's API key, kept for this tab only (sessionStorage) under `slot`. */
export const keys = {
  get(slot) {
    try {
      return sessionStorage.getItem(`loyalty.${slot}`);
    } catch {
      return null;
    }
  },
  set(slot, token) {
    sessionStorage.setItem(`loyalty.${slot}`, token);
  },
  clear(slot) {
    sessionStorage.removeItem(`loyalty.${slot}`);
  },
};

/**
 * Wires a key sign-in form (#signin-form with #api-key) for `slot`; `start(token, key)` shows the page for
 * the key (`key`: GET /v1/api-key) and `roles` are the key roles the page admits. Answers a sign-out.
 */
export function keySignIn({ slot, roles, start, statusId = "status" }) {
  const form = $("signin-form");
  const input = $("api-key");
  async function open(token) {
    say(statusId, "Checking the key…");
    try {
      const key = await api("/v1/api-key", { token });
      if (!roles.includes(key.role)) {
        throw new Error(`This page needs ${roles.join(" or ")} key; this one is a ${key.role} key.`);
      }
      keys.set(slot, token);
      show("signin", false);
      say(statusId, "");
      await start(token, key);
    } catch (error) {
      keys.clear(slot);
      show("signin", true);
      say(statusId, explain(error), "error");
      input.focus();
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    input.value = "";
    if (token) open(token);
  });
  const saved = keys.get(slot);
  if (saved) open(saved);
  else show("signin", true);
  return () => {
    keys.clear(slot);
    window.location.reload();
  };
}

/** The period a range of `seconds` is best shown in (a dozen to a few dozen bars). */
export function periodFor(seconds) {
  const days = seconds / 86400;
  if (days <= 45) return "day";
  if (days <= 26 * 7) return "week";
  return "month";
}
