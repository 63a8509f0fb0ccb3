// The clinic app: sign in, the consultation list, and the consultation room (bedside video,
// waveforms, vital signs, device states, who is present, chat), in Japanese, Korean or English.
import { Api, ApiError } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { BedsideLink } from "./peer.js";
import { Signaling } from "./signaling.js";
import { Trace } from "./traces.js";

const $ = (id) => document.getElementById(id);
const api = new Api();
let sites = [];
let room = null; // the open consultation room, see openRoom()

/** The order vital signs are shown in; others follow as they come. */
const NUMERIC_ORDER = ["heart_rate", "spo2", "pulse_rate", "nibp_sys", "nibp_dia", "nibp_mean",
  "resp_rate", "temperature", "perfusion_index"];
/** A value older than this is greyed out; a derived value yields to a device's own. */
const STALE_MS = 10000;
/** Below this signal-quality score a trace is labelled "poor signal". */
const POOR_QUALITY = 0.3;

function show(view) {
  for (const id of ["login-view", "list-view", "room-view"]) $(id).hidden = id !== view;
}

function siteName(code) {
  const key = `site.${code}`;
  const text = t(key);
  return text === key ? (sites.find((s) => s.code === code)?.name ?? code) : text;
}

function errorText(err) {
  if (err instanceof ApiError) return t("error.server", { detail: err.detail });
  return t("error.network");
}

// -- sign in -----------------------------------------------------------------------------------

async function onLogin(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const principal = await api.login($("username").value, $("password").value);
    sites = await api.get("/api/sites");
    const site = sites.find((s) => s.code === principal.site);
    if (!localStorage.getItem("telemed.language")) {
      await i18n.setLanguage(i18n.preferredLanguage(site?.language));
      $("language").value = i18n.language;
    }
    $("password").value = "";
    renderWho();
    $("logout").hidden = false;
    await showList();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) $("login-error").textContent = t("login.failed");
    else if (err instanceof ApiError && err.status === 429) $("login-error").textContent = t("login.locked");
    else $("login-error").textContent = errorText(err);
  }
}

function renderWho() {
  const p = api.principal;
  $("whoami").textContent = p ? `${p.name} · ${t(`role.${p.role}`)} · ${siteName(p.site)}` : "";
}

async function logout() {
  leaveRoom();
  await api.logout();
  $("logout").hidden = true;
  $("whoami").textContent = "";
  show("login-view");
}

// -- the consultation list ---------------------------------------------------------------------

async function showList() {
  leaveRoom();
  show("list-view");
  $("list-error").textContent = "";
  const p = api.principal;
  const clinician = p.role === "doctor" || p.role === "technician";
  $("request-form").hidden = !clinician;
  const select = $("consulting-site");
  select.replaceChildren(...sites.filter((s) => s.code !== p.site).map((s) => {
    const option = document.createElement("option");
    option.value = s.code;
    option.textContent = siteName(s.code);
    return option;
  }));
  try {
    renderList(await api.get("/api/consultations"));
  } catch (err) {
    $("list-error").textContent = errorText(err);
  }
}

function renderList(rows) {
  const p = api.principal;
  const body = $("consultations").tBodies[0];
  body.replaceChildren();
  $("consultations-empty").hidden = rows.length > 0;
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.id = row.id;
    tr.insertCell().textContent = t("consultations.from", {
      from: siteName(row.requesting_site), to: siteName(row.consulting_site),
    });
    const state = tr.insertCell();
    state.className = "state";
    state.textContent = t(`state.${row.state}`);
    const consent = tr.insertCell();
    consent.className = "consent";
    consent.textContent = t(row.consent_cross_border ? "consultations.consentYes" : "consultations.consentNo");
    tr.insertCell().textContent = row.reason || "";
    tr.insertCell().textContent = new Date(row.created_at).toLocaleString(i18n.language);
    const actions = tr.insertCell();
    const button = (key, handler) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t(key);
      b.dataset.action = key;
      b.onclick = () => handler(row).catch((err) => { $("list-error").textContent = errorText(err); });
      actions.append(b);
    };
    if (row.state === "requested" && p.role === "doctor" && p.site === row.consulting_site) {
      button("consultations.accept", async (r) => {
        await api.post(`/api/consultations/${r.id}/accept`);
        await showList();
      });
    }
    if (row.state === "requested" && p.site === row.requesting_site) {
      button("consultations.cancel", async (r) => {
        await api.post(`/api/consultations/${r.id}/cancel`);
        await showList();
      });
    }
    if (row.state === "active" && (p.role === "doctor" || p.role === "technician")) {
      button("consultations.join", async (r) => openRoom(r));
    }
  }
}

async function onRequest(event) {
  event.preventDefault();
  try {
    await api.post("/api/consultations", {
      consulting_site: $("consulting-site").value,
      consent_cross_border: $("consent").checked,
      reason: $("reason").value,
    });
    $("reason").value = "";
    await showList();
  } catch (err) {
    $("list-error").textContent = errorText(err);
  }
}

// -- the consultation room ---------------------------------------------------------------------

async function openRoom(row) {
  show("room-view");
  $("room-error").textContent = "";
  $("room-ended").hidden = true;
  $("room-title").textContent = t("consultations.from", {
    from: siteName(row.requesting_site), to: siteName(row.consulting_site),
  });
  $("close-consultation").hidden = api.principal.role !== "doctor";
  for (const id of ["traces", "numerics", "devices", "peers", "chat-log"]) $(id).replaceChildren();
  $("no-devices").hidden = false;
  $("video").srcObject = null;

  let iceServers = [];
  try {
    iceServers = (await api.get("/api/ice-servers")).ice_servers.map((s) => ({
      urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined,
    }));
  } catch (err) {
    $("room-error").textContent = errorText(err);
  }
  const signaling = new Signaling(() => api.token);
  const link = new BedsideLink(signaling, iceServers);
  room = {
    row, signaling, link, traces: new Map(), numerics: new Map(), devices: new Map(),
    peers: new Map(), frame: 0, ticker: null,
  };
  signaling.addEventListener("message", (e) => onSignal(e.detail));
  signaling.addEventListener("down", (e) => {
    if (!room) return;
    // 4401/4408: the session is over (idle too long, or signed out elsewhere).
    if (e.detail.code === 4401 || e.detail.code === 4408) api.onExpired();
    else setLinkState("signaling.lost");
  });
  link.addEventListener("state", (e) => setLinkState(`link.${e.detail}`));
  link.addEventListener("video", (e) => { $("video").srcObject = e.detail; });
  link.addEventListener("waveform", (e) => onWaveform(e.detail));
  link.addEventListener("event", (e) => onBedsideEvent(e.detail));
  setLinkState("link.waiting");
  signaling.consultationId = row.id; // joined on every welcome, reconnections included
  signaling.connect();
  const draw = () => {
    if (!room) return;
    for (const trace of room.traces.values()) trace.draw();
    room.frame = requestAnimationFrame(draw);
  };
  room.frame = requestAnimationFrame(draw);
  room.ticker = setInterval(renderNumerics, 1000);
}

function leaveRoom() {
  if (!room) return;
  cancelAnimationFrame(room.frame);
  clearInterval(room.ticker);
  room.signaling.leave();
  room.signaling.close();
  room.link.close();
  room = null;
}

function setLinkState(key) {
  const badge = $("link-state");
  badge.textContent = t(`room.${key}`);
  badge.dataset.state = key;
  badge.className = `badge ${key.split(".")[1]}`;
}

function onSignal(message) {
  if (!room) return;
  switch (message.type) {
    case "joined":
      room.peers = new Map(message.peers.map((p) => [p.peer_id, p]));
      renderPeers();
      break;
    case "peer-joined":
      room.peers.set(message.peer.peer_id, message.peer);
      renderPeers();
      break;
    case "peer-left":
      room.peers.delete(message.peer_id);
      room.link.peerLeft(message.peer_id);
      renderPeers();
      if (message.reason === "closed") ended();
      break;
    case "offer":
      room.link.acceptOffer(message).catch((err) => { $("room-error").textContent = String(err); });
      break;
    case "candidate":
      room.link.addCandidate(message);
      break;
    case "chat":
      addChat(message);
      break;
    case "consultation-state":
      if (message.consultation.state === "closed" || message.consultation.state === "cancelled") ended();
      break;
    case "error":
      $("room-error").textContent = t("error.server", { detail: message.reason });
      if (message.ref === "join") ended();
      break;
  }
}

function ended() {
  $("room-ended").hidden = false;
  $("close-consultation").hidden = true;
  if (room) room.link.closeConnection();
}

function renderPeers() {
  $("peers").replaceChildren(...[...room.peers.values()].map((p) => {
    const li = document.createElement("li");
    const role = p.kind === "gateway" ? t("role.gateway") : t(`role.${p.role}`);
    li.textContent = `${p.name} · ${role} · ${siteName(p.site)}`;
    return li;
  }));
}

function onWaveform(packet) {
  let trace = room.traces.get(packet.channel);
  if (!trace) trace = addTrace({ channel: packet.channel, code: String(packet.channel), unit: "" });
  trace.push(packet);
}

function addTrace(info) {
  const box = document.createElement("div");
  box.className = "trace";
  box.dataset.channel = info.channel;
  const label = document.createElement("div");
  label.className = "label";
  box.append(label);
  const canvas = document.createElement("canvas");
  canvas.width = 800;
  canvas.height = 110;
  box.append(canvas);
  $("traces").append(box);
  const trace = new Trace(canvas, { colour: info.code === "pleth" ? "#4fc3f7" : "#3ddc84" });
  trace.info = info;
  trace.label = label;
  trace.box = box;
  labelTrace(trace);
  room.traces.set(info.channel, trace);
  return trace;
}

function labelTrace(trace) {
  const { code, sample_rate: rate } = trace.info;
  const name = t(`vital.${code}`);
  const unit = displayUnit(trace.info.unit);
  const poor = trace.quality !== undefined && trace.quality < POOR_QUALITY ? ` · ${t("quality.poor")}` : "";
  trace.label.textContent = `${name}${unit ? ` (${unit})` : ""}${rate ? ` · ${rate} Hz` : ""}${poor}`;
  trace.box.dataset.quality = trace.quality ?? "";
}

function onBedsideEvent(message) {
  switch (message.type) {
    case "channel": {
      const trace = room.traces.get(message.channel);
      if (trace) { trace.info = message; labelTrace(trace); } else addTrace(message);
      break;
    }
    case "numeric":
      room.numerics.set(`${message.code}|${message.derived ? "derived" : "device"}`, {
        ...message, receivedAt: Date.now(),
      });
      renderNumerics();
      break;
    case "status":
      room.devices.set(message.device, message);
      renderDevices();
      break;
    case "quality": {
      // The gateway scores each waveform every second (0 unusable .. 1 clean).
      const trace = room.traces.get(message.channel);
      if (trace) { trace.quality = message.score; labelTrace(trace); }
      break;
    }
  }
}

function renderNumerics() {
  if (!room) return;
  const now = Date.now();
  const codes = new Set([...room.numerics.values()].map((m) => m.code));
  const ordered = [...NUMERIC_ORDER.filter((c) => codes.has(c)), ...[...codes].filter((c) => !NUMERIC_ORDER.includes(c))];
  const tiles = ordered.map((code) => {
    const own = room.numerics.get(`${code}|device`);
    const derived = room.numerics.get(`${code}|derived`);
    // The device's own value wins while it is fresh; the gateway's estimate fills in.
    const m = own && now - own.receivedAt < STALE_MS ? own : (derived ?? own);
    const tile = document.createElement("div");
    tile.className = "numeric";
    tile.id = `num-${code}`;
    if (now - m.receivedAt > STALE_MS) tile.classList.add("stale");
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = t(`vital.${code}`);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = m.value === null ? "--" : formatValue(m.value);
    value.title = m.value === null ? t("vital.noValue") : "";
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = displayUnit(m.unit);
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = m.derived ? t("vital.derived") : "";
    tile.append(name, value, unit, note);
    return tile;
  });
  $("numerics").replaceChildren(...tiles);
}

function formatValue(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : 1);
}

function displayUnit(ucum) {
  return { "/min": "/min", "%": "%", "mm[Hg]": "mmHg", "Cel": "°C", "{1}": "" }[ucum] ?? ucum ?? "";
}

function renderDevices() {
  $("no-devices").hidden = room.devices.size > 0;
  $("devices").replaceChildren(...[...room.devices.values()].map((s) => {
    const li = document.createElement("li");
    li.dataset.device = s.device;
    li.dataset.state = s.state;
    li.textContent = `${s.device}: ${t(`device.${s.state}`)}${s.detail ? ` (${s.detail})` : ""}`;
    return li;
  }));
}

function addChat(message) {
  const li = document.createElement("li");
  const who = document.createElement("div");
  who.className = "who";
  const when = message.at ? new Date(message.at).toLocaleTimeString(i18n.language) : "";
  who.textContent = `${message.sender_name ?? "?"} · ${siteName(message.sender_site ?? "")} · ${when}`;
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message.text; // text, never HTML: chat is not trusted markup
  li.append(who, text);
  $("chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function onChat(event) {
  event.preventDefault();
  const text = $("chat-text").value.trim();
  if (!text || !room) return;
  if (room.signaling.send({ type: "chat", text })) $("chat-text").value = "";
}

async function closeConsultation() {
  if (!room) return;
  try {
    await api.post(`/api/consultations/${room.row.id}/close`);
  } catch (err) {
    $("room-error").textContent = errorText(err);
  }
}

// -- start -----------------------------------------------------------------------------------

async function relabel() {
  await i18n.setLanguage($("language").value);
  renderWho();
  if (room) {
    setLinkState($("link-state").dataset.state || "link.waiting");
    for (const trace of room.traces.values()) labelTrace(trace);
    renderNumerics();
    renderDevices();
    renderPeers();
  } else if (api.principal && !$("list-view").hidden) {
    await showList();
  }
}

async function start() {
  await i18n.setLanguage(i18n.preferredLanguage(null));
  $("language").value = i18n.language;
  $("language").addEventListener("change", relabel);
  $("login-form").addEventListener("submit", onLogin);
  $("request-form").addEventListener("submit", onRequest);
  $("logout").addEventListener("click", logout);
  $("back").addEventListener("click", () => showList());
  $("chat-form").addEventListener("submit", onChat);
  $("close-consultation").addEventListener("click", closeConsultation);
  api.onExpired = () => {
    if (!api.token) return;
    leaveRoom();
    api.forget();
    $("logout").hidden = true;
    $("whoami").textContent = "";
    show("login-view");
    $("login-error").textContent = t("login.expired");
  };
  for (const kind of ["pointerdown", "pointermove", "keydown", "wheel"]) {
    document.addEventListener(kind, () => api.touch(), { passive: true });
  }
  show("login-view");
  document.body.dataset.ready = "true";
}

start();
