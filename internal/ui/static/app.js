// vigil's dashboard: the cluster summary, members, services and the live
// event log, from the agent's API with the operator's token. Every value is
// put in the page as text, never as markup.
"use strict";

const state = { token: sessionStorage.getItem("vigil-token") || "", members: [], services: [], lastSeq: 0, streaming: false };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class APIError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : "HTTP " + status);
    this.status = status;
  }
}

async function api(method, path, body) {
  const opts = { method, headers: { "Authorization": "Bearer " + state.token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
  if (!r.ok) throw new APIError(r.status, data);
  return data;
}

function showLogin(msg) {
  state.role = "";
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("conn").textContent = "signed out";
}

function message(text, isError) {
  const m = $("message");
  m.hidden = !text;
  m.textContent = text || "";
  m.className = "message" + (isError ? " error" : "");
}

function stateBadge(s) { return el("span", { class: "state " + s }, s); }

function renderStatus(st) {
  $("cluster").textContent = st.cluster + " (" + st.profile + ")";
  $("director").textContent = st.director || "(none)";
  $("local").textContent = st.local;
  $("stale").textContent = st.stale ? (st.stale_reason || "stale") : "";
  const exp = Math.max(st.expected_votes, 1);
  const bar = $("quorum-bar");
  bar.style.width = (100 * st.votes_present / exp) + "%";
  bar.className = "bar" + (st.quorum ? "" : " lost");
  $("quorum-need").style.left = (100 * st.quorum_needed / exp) + "%";
  $("quorum-text").textContent = (st.quorum ? "WITH" : "WITHOUT") + " quorum: " + st.votes_present + " of " +
    st.expected_votes + " votes, " + st.quorum_needed + " needed";
  $("quorum-text").className = st.quorum ? "" : "error";
  state.members = st.members || [];
  const tb = $("members").querySelector("tbody");
  tb.replaceChildren(...state.members.map((m) => {
    const links = el("span", {});
    for (const l of m.links || []) {
      links.append(el("span", { class: "dot " + (l.up ? "up" : "down"), title: l.addr + (l.up ? " up" : " down") }), l.addr + " ");
    }
    const draining = !!m.draining;
    const btn = el("button", { "data-member": m.name, class: "drain", onclick: () => act("PUT", "/v1/members/" + encodeURIComponent(m.name) + "/drain", { on: !draining }, (draining ? "undrain " : "drain ") + m.name) },
      draining ? "undrain" : "drain");
    return el("tr", { "data-member": m.name }, el("td", {}, m.name), el("td", {}, stateBadge(m.state)), el("td", {}, m.agent_state),
      el("td", {}, m.role + (m.witness ? ", witness" : "") + (draining ? ", draining" : "")), el("td", {}, m.votes), el("td", {}, links), el("td", {}, btn));
  }));
}

function renderServices(ss) {
  state.services = ss || [];
  const online = state.services.filter((s) => s.state === "ONLINE").length;
  $("svc-summary").textContent = online + " of " + state.services.length + " ONLINE";
  const tb = $("services").querySelector("tbody");
  tb.replaceChildren(...state.services.map((s) => {
    const fails = (s.fails || []).map((f) => f.member + ":" + f.count + (f.banned ? " (banned)" : "")).join(" ");
    const sel = el("select", { class: "relocate-to", "data-service": s.name });
    const up = (m) => (m.state === "UP" ? 0 : 1);
    for (const m of [...state.members].sort((a, b) => up(a) - up(b))) {
      if (m.name !== s.owner) sel.append(el("option", { value: m.name }, m.name + (m.state === "UP" ? "" : " (" + m.state + ")")));
    }
    const actions = el("td", {},
      sel,
      el("button", { class: "relocate", "data-service": s.name, onclick: () => act("POST", "/v1/services/" + encodeURIComponent(s.name) + "/relocate", { to: sel.value }, "relocate " + s.name + " to " + sel.value) }, "relocate"),
      el("button", { class: "online", onclick: () => act("POST", "/v1/services/" + encodeURIComponent(s.name) + "/online", undefined, "online " + s.name) }, "online"),
      el("button", { class: "offline", onclick: () => act("POST", "/v1/services/" + encodeURIComponent(s.name) + "/offline", undefined, "offline " + s.name) }, "offline"),
      el("button", { class: "why", "data-service": s.name, onclick: () => why(s.name) }, "why"));
    return el("tr", { "data-service": s.name, "data-state": s.state, "data-owner": s.owner || "" },
      el("td", {}, s.name), el("td", {}, stateBadge(s.state)), el("td", { class: "owner" }, s.owner || "-"), el("td", {}, s.epoch),
      el("td", {}, s.target), el("td", {}, fails), el("td", {}, s.reason || ""), actions);
  }));
}

async function why(name) {
  try {
    const d = await api("GET", "/v1/services/" + encodeURIComponent(name));
    const w = $("why");
    w.hidden = false;
    w.textContent = d.why;
  } catch (e) { message(e.message, true); }
}

async function act(method, path, body, what) {
  try {
    await api(method, path, body);
    message(what + ": asked", false);
    refresh();
  } catch (e) {
    if (e.status === 403 || e.status === 401) { showLogin(e.message); return; }
    message(what + ": " + e.message, true);
  }
}

async function refresh() {
  try {
    if (!state.role) {
      const me = await api("GET", "/v1/whoami");
      state.role = me.role;
      $("whoami").textContent = me.who;
      // Viewers see no buttons: the API would refuse them anyway.
      document.body.classList.toggle("viewer", me.role === "viewer");
    }
    const [st, ss] = await Promise.all([api("GET", "/v1/status"), api("GET", "/v1/services")]);
    renderStatus(st);
    renderServices(ss);
    $("app").hidden = false;
    $("login").hidden = true;
    if (!state.streaming) stream();
  } catch (e) {
    if (e.status === 403 || e.status === 401) { showLogin(e.message); return; }
    $("conn").textContent = "agent not reachable: " + e.message;
    $("conn").className = "conn down";
  }
}

function addEvent(ev, fresh) {
  state.lastSeq = Math.max(state.lastSeq, ev.seq);
  const t = new Date(ev.at);
  const p2 = (n, w) => String(n).padStart(w || 2, "0");
  const when = t.getFullYear() + "-" + p2(t.getMonth() + 1) + "-" + p2(t.getDate()) + " " + p2(t.getHours()) + ":" +
    p2(t.getMinutes()) + ":" + p2(t.getSeconds()) + "." + p2(t.getMilliseconds(), 3);
  const li = el("li", { "data-seq": ev.seq, "data-kind": ev.kind, class: fresh ? "fresh" : "" },
    el("span", { class: "seq" }, "#" + ev.seq),
    el("span", { class: "time" }, when),
    el("span", { class: "kind" }, ev.kind), ev.message, ev.by ? "  (by " + ev.by + ")" : "");
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 500) list.lastChild.remove();
  if (fresh) setTimeout(() => li.classList.remove("fresh"), 3000);
}

// stream reads the server-sent event stream with fetch (EventSource cannot
// send the token), and reconnects after the last event it saw.
async function stream() {
  state.streaming = true;
  let first = true;
  while (state.token) {
    try {
      const q = state.lastSeq ? "?after=" + state.lastSeq : "?limit=100";
      const r = await fetch("/v1/events/stream" + q, { headers: { "Authorization": "Bearer " + state.token } });
      if (r.status === 403 || r.status === 401) { state.streaming = false; showLogin("the token was refused"); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      $("conn").textContent = "live";
      $("conn").className = "conn live";
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const msg = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = msg.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const ev = JSON.parse(data);
          if (ev.seq <= state.lastSeq) continue;
          addEvent(ev, !first);
          if (ev.kind !== "alert") scheduleRefresh();
        }
        first = false;
      }
    } catch (e) {
      $("conn").textContent = "event stream lost: " + e.message + "; reconnecting";
      $("conn").className = "conn down";
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  state.streaming = false;
}

let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 150);
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  state.role = "";
  sessionStorage.setItem("vigil-token", state.token);
  $("login-error").textContent = "";
  refresh();
});

if (state.token) refresh(); else showLogin("");
setInterval(() => { if (state.token && !$("app").hidden) refresh(); }, 2000);
