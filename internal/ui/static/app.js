// dcounter dashboard: polls this server's API every second and renders it.
// Plain DOM, no framework; text from the server is only ever set with
// textContent, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "dcounter-token";
const MAX_EVENTS = 100;
const HISTORY = 60;

const $ = (id) => document.getElementById(id);
const state = {
  mode: null,          // "gateway" or "node", found from /ui/api/key
  key: keyFromHash(),
  members: null,       // previous poll's members, by id, for events
  gwNodes: null,       // previous poll's gateway view, by url
  metrics: null,       // previous poll's counters, for rates
  rates: [],
  needToken: false,
};

function keyFromHash() {
  const m = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : "default";
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function get(path) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  const text = await resp.text();
  if (resp.status === 401) showTokenForm(true);
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = text; }
  return { status: resp.status, body };
}

function showTokenForm(need) {
  state.needToken = state.needToken || need;
  $("token-form").hidden = false;
  if (need && document.activeElement !== $("token")) $("token").focus();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function statusClass(s) {
  switch (s) {
    case "alive": case "healthy": case "ok": return "ok";
    case "suspect": case "unproven": case "unlisted": case "stopping": return "warn";
    default: return "bad";
  }
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td", c.text, c.cls);
      if (c.title) td.title = c.title;
      tr.append(td);
    }
    return tr;
  }));
}

function message(r) {
  if (r.status === 401) return "needs a token";
  if (r.status === 403) return "this token's role may not read it";
  if (r.body && r.body.error) return r.body.error;
  return "HTTP " + r.status;
}

// ---- members ----

function renderMembers(r) {
  const note = $("members-note");
  const tbody = $("members").querySelector("tbody");
  if (r.status !== 200 || !Array.isArray(r.body)) {
    note.textContent = "(" + message(r) + ": /nodes needs the admin role)";
    return;
  }
  const self = r.body.find((m) => m.self);
  // Times are the reporting node's clock, shown as it reports them. Ages
  // are differences between two of its own times (its own entry is fresh
  // at every heartbeat), so neither its clock nor this device's being off
  // changes them; a gap between the two clocks is only pointed out.
  const selfSeen = self ? Date.parse(self.last_seen) : NaN;
  let skew = "";
  if (isFinite(selfSeen) && Math.abs(selfSeen - Date.now()) > 60000) {
    skew = " — its clock is " + fmtAge((selfSeen - Date.now()) / 1000, true) + " this device's";
  }
  note.textContent = self ? "(as " + (self.name || self.id) + " sees them" + skew + ")" : "";
  note.className = skew ? "warn" : "";
  const members = [...r.body].sort((a, b) => (a.name || "").localeCompare(b.name || ""));
  fill(tbody, members.map((m) => {
    const age = (selfSeen - Date.parse(m.last_seen)) / 1000;
    return [
      { text: (m.name || m.id) + (m.self && state.mode === "node" ? " (this node)" : ""), title: "id " + m.id },
      { text: m.status, cls: statusClass(m.status) },
      { text: m.incarnation, cls: "num" },
      { text: shortTime(m.last_seen) + (isFinite(age) && !m.self ? " (" + fmtAge(Math.max(0, age)) + " ago)" : ""), title: m.last_seen },
      { text: m.http_addr || m.gossip_addr },
    ];
  }));
  const now = new Map(members.map((m) => [m.id, m]));
  if (state.members) {
    for (const [id, m] of now) {
      const old = state.members.get(id);
      const who = m.name || id;
      if (!old) event(who + " joined (" + m.status + ")", m.status);
      else if (old.status !== m.status) event(who + ": " + old.status + " → " + m.status, m.status);
      else if (old.incarnation !== m.incarnation) event(who + " refuted a suspicion (incarnation " + m.incarnation + ")", "alive");
    }
    for (const [id, m] of state.members) {
      if (!now.has(id)) event((m.name || id) + " forgotten", "dead");
    }
  }
  state.members = now;
}

function renderGatewayNodes(r) {
  const wrap = $("gateway-nodes-wrap");
  wrap.hidden = false;
  const tbody = $("gateway-nodes").querySelector("tbody");
  if (r.status !== 200 || !Array.isArray(r.body)) {
    fill(tbody, [[{ text: message(r) + " (/nodes needs the admin role)" }]]);
    return;
  }
  fill(tbody, r.body.map((n) => [
    { text: n.name || n.id || "?", title: n.id ? "id " + n.id : "" },
    { text: n.status + (n.error && n.status !== "healthy" ? " (" + n.error + ")" : ""), cls: statusClass(n.status) },
    { text: n.outstanding, cls: "num" },
    { text: shortTime(n.last_check), title: n.last_check },
    { text: n.url },
  ]));
  const now = new Map(r.body.map((n) => [n.url, n]));
  if (state.gwNodes) {
    for (const [u, n] of now) {
      const old = state.gwNodes.get(u);
      if (!old) event("gateway: " + (n.name || u) + " listed (" + n.status + ")", n.status);
      else if (old.status !== n.status) event("gateway: " + (n.name || u) + " " + old.status + " → " + n.status, n.status);
    }
  }
  state.gwNodes = now;
}

// fmtAge formats seconds; signed, it says "ahead of" or "behind".
function fmtAge(sec, signed) {
  const a = Math.abs(sec);
  const t = a < 60 ? a.toFixed(a < 10 ? 1 : 0) + " s" : a < 3600 ? Math.round(a / 60) + " min" : a < 172800 ? (a / 3600).toFixed(1) + " h" : Math.round(a / 86400) + " days";
  return signed ? t + (sec > 0 ? " ahead of" : " behind") : t;
}

function shortTime(s) {
  if (!s) return "–";
  const m = /T(\d\d:\d\d:\d\d(?:\.\d)?)/.exec(s);
  return m ? m[1] + (s.endsWith("Z") ? " UTC" : "") : s;
}

// ---- the chosen key ----

function renderValues(rows, conv) {
  fill($("values").querySelector("tbody"), rows);
  const c = $("converged");
  c.textContent = conv;
  c.className = "tag " + (conv === "converged" ? "ok" : conv === "diverged" ? "bad" : "warn");
}

function renderGatewayKey(r) {
  if (r.status !== 200 || !r.body || !Array.isArray(r.body.nodes)) {
    renderValues([[{ text: message(r) }, { text: "" }, { text: "" }]], "unknown");
    return;
  }
  const rows = r.body.nodes.map((n) => [
    { text: n.name || n.url, title: n.url },
    { text: n.value === null ? "–" : n.value, cls: "num" },
    { text: n.status === "healthy" ? (n.error || "") : n.status + (n.error ? " (" + n.error + ")" : ""),
      cls: n.status === "healthy" && !n.error ? "" : statusClass(n.status === "healthy" ? "bad" : n.status) },
  ]);
  renderValues(rows, r.body.converged ? "converged" : "diverged");
}

function renderNodeKey(r) {
  if (r.status !== 200 || !r.body) {
    renderValues([[{ text: "this node" }, { text: "–" }, { text: message(r) }]], "unknown");
    return;
  }
  renderValues([[{ text: "this node" }, { text: r.body.value, cls: "num" }, { text: "" }]], "this node only");
  $("key-note").textContent = "A node shows its own value; the gateway's /ui compares every node's.";
}

// ---- write rate and latency, from /metrics ----

// parseMetrics sums Prometheus text samples into the few series we show.
function parseMetrics(text, mode) {
  const out = { writes: 0, latSum: 0, latCount: 0, hasLat: false };
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", v] = m;
    const val = Number(v);
    if (!isFinite(val)) continue;
    if (mode === "gateway") {
      if (name === "dcounter_gateway_requests_total" && labels.includes('kind="write"') && labels.includes('outcome="ok"')) out.writes += val;
      if (name === "dcounter_gateway_request_duration_seconds_sum" && labels.includes('kind="write"')) { out.latSum += val; out.hasLat = true; }
      if (name === "dcounter_gateway_request_duration_seconds_count" && labels.includes('kind="write"')) out.latCount += val;
    } else {
      if (name === "dcounter_operations_total" && /op="(inc|dec|del|ttl)"/.test(labels) && labels.includes('outcome="ok"')) out.writes += val;
      if (/^dcounter_.*request_duration_seconds_sum$/.test(name)) { out.latSum += val; out.hasLat = true; }
      if (/^dcounter_.*request_duration_seconds_count$/.test(name)) out.latCount += val;
    }
  }
  return out;
}

function renderMetrics(r) {
  const note = $("rate-note");
  if (r.status !== 200 || typeof r.body !== "string") {
    note.textContent = message(r) + " (/metrics needs the admin role)";
    return;
  }
  const now = { t: performance.now(), ...parseMetrics(r.body, state.mode) };
  const prev = state.metrics;
  state.metrics = now;
  if (!prev) return;
  const dt = (now.t - prev.t) / 1000;
  const dw = Math.max(0, now.writes - prev.writes);
  const rate = dt > 0 ? dw / dt : 0;
  $("write-rate").textContent = rate < 10 ? rate.toFixed(1) : Math.round(rate).toString();
  const dc = now.latCount - prev.latCount;
  if (!now.hasLat) {
    $("write-latency").textContent = "n/a";
    note.textContent = "This server exposes no request latency histogram.";
  } else {
    $("write-latency").textContent = dc > 0 ? fmtSeconds((now.latSum - prev.latSum) / dc) : "–";
    note.textContent = state.mode === "gateway" ? "Writes acknowledged by this gateway, and their mean time." : "Writes applied by this node (HTTP and RESP).";
  }
  state.rates.push(rate);
  if (state.rates.length > HISTORY) state.rates.shift();
  drawSpark();
}

function fmtSeconds(s) {
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}

function drawSpark() {
  const c = $("spark");
  const w = c.clientWidth || 600, h = c.clientHeight || 60;
  const dpr = window.devicePixelRatio || 1;
  c.width = w * dpr; c.height = h * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...state.rates);
  g.strokeStyle = getComputedStyle(document.body).getPropertyValue("--ok") || "green";
  g.lineWidth = 2;
  g.beginPath();
  state.rates.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * w, y = h - 2 - (v / max) * (h - 4);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

// ---- events ----

function event(text, status) {
  const li = el("li");
  // The browser's clock: when this page noticed the change.
  li.append(el("time", new Date().toLocaleTimeString([], { hour12: false })), el("span", text, statusClass(status)));
  const ol = $("events");
  ol.prepend(li);
  while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
}

// ---- the loop ----

async function detectMode() {
  const r = await get("/ui/api/key?key=" + encodeURIComponent(state.key));
  if (r.status === 401) return null;
  state.mode = r.status === 404 ? "node" : "gateway";
  $("mode").textContent = state.mode;
  return r;
}

async function poll() {
  let first = null;
  if (!state.mode) {
    first = await detectMode();
    if (!state.mode) return false;
  }
  const k = encodeURIComponent(state.key);
  if (state.mode === "gateway") {
    const [key, members, nodes, metrics] = await Promise.all([
      first ? Promise.resolve(first) : get("/ui/api/key?key=" + k),
      get("/ui/api/members"), get("/nodes"), getText("/metrics")]);
    renderGatewayKey(key);
    renderMembers(members);
    renderGatewayNodes(nodes);
    renderMetrics(metrics);
  } else {
    const [key, members, metrics] = await Promise.all([get("/counters/" + k), get("/nodes"), getText("/metrics")]);
    renderNodeKey(key);
    renderMembers(members);
    renderMetrics(metrics);
  }
  return true;
}

async function getText(path) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  const text = await resp.text();
  if (resp.status === 401) showTokenForm(true);
  let body = text;
  if (resp.status !== 200) { try { body = JSON.parse(text); } catch (e) { /* keep text */ } }
  return { status: resp.status, body };
}

async function loop() {
  const conn = $("conn");
  try {
    const ok = await poll();
    conn.textContent = ok ? "live" : "needs a token";
    conn.className = "tag " + (ok ? "ok" : "warn");
    $("updated").textContent = "Last update " + new Date().toLocaleTimeString([], { hour12: false }) + " (this device's clock).";
  } catch (e) {
    conn.textContent = "server unreachable";
    conn.className = "tag bad";
  }
  setTimeout(loop, POLL_MS);
}

function init() {
  $("key").value = state.key;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim() || "default";
    history.replaceState(null, "", "#key=" + encodeURIComponent(state.key));
  });
  $("token-button").addEventListener("click", () => { $("token-form").hidden = !$("token-form").hidden; });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("token-form").hidden = true;
    state.needToken = false;
  });
  $("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); state.mode = null; });
  window.addEventListener("hashchange", () => { state.key = keyFromHash(); $("key").value = state.key; });
  loop();
}

init();
