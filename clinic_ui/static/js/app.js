// The clinic app: sign in, the consultation list (list.js) and the consultation room
// (room.js), in Japanese, Korean or English. One state object (state.js) is created here and
// passed to each view.
//
// The address names where you are: `#/` the list, `#/consultations/ID` a room; reload and
// Back return there. The session lives in sessionStorage (this tab only) and one signaling
// socket per tab is open from sign-in to sign-out.
import { ApiError } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { siteName } from "./format.js";
import { errorText, ListView } from "./list.js";
import { openRoom, resetRoomView } from "./room.js";
import { Signaling } from "./signaling.js";
import { CloseCode } from "./protocol.js";
import { createState } from "./state.js";

const $ = (id) => document.getElementById(id);
const ROOM_ROUTE = /^#\/consultations\/([A-Za-z0-9_.:-]{1,64})$/;

function show(view) {
  for (const id of ["login-view", "list-view", "room-view"]) $(id).hidden = id !== view;
}

function leaveRoom(state) {
  if (!state.room) return;
  state.room.close();
  state.room = null;
}

/** Show what the address names (signed in), or the sign-in form. */
async function route(state) {
  if (!state.api.token) {
    leaveRoom(state);
    show("login-view");
    return;
  }
  const match = ROOM_ROUTE.exec(location.hash);
  if (match) {
    if (state.room?.row.id === match[1]) return;
    leaveRoom(state);
    state.list.hide();
    resetRoomView();
    show("room-view");
    try {
      await openRoom(state, await state.api.get(`/api/consultations/${match[1]}`));
    } catch (err) {
      $("room-error").textContent = errorText(err);
    }
    return;
  }
  if (location.hash !== "#/") {
    history.replaceState(null, "", "#/");
  }
  leaveRoom(state);
  show("list-view");
  await state.list.show();
}

function go(hash) {
  if (location.hash === hash) return;
  location.hash = hash; // a history entry: Back returns here
}

function renderWho(state) {
  const p = state.api.principal;
  $("whoami").textContent = p ? `${p.name} · ${t(`role.${p.role}`)} · ${siteName(state.sites, p.site)}` : "";
}

/** Signed in (or restored): the sites, the language, the session's socket, then the route. */
async function enter(state) {
  state.sites = await state.api.get("/api/sites");
  const site = state.sites.find((s) => s.code === state.api.principal.site);
  // The site's language, unless the user picked one themselves.
  await i18n.setLanguage(i18n.preferredLanguage(site?.language));
  $("language").value = i18n.language;
  renderWho(state);
  $("logout").hidden = false;
  const signaling = new Signaling(() => state.api.token);
  signaling.addEventListener("message", (e) => {
    if (e.detail.type === "consultation") {
      state.list.update(e.detail.consultation);
      if (state.room?.row.id === e.detail.consultation.id) state.room.update(e.detail.consultation);
    }
  });
  signaling.addEventListener("down", (e) => {
    // The session is over (idle too long, or signed out elsewhere): nothing to reconnect.
    if (e.detail.code === CloseCode.UNAUTHORIZED || e.detail.code === CloseCode.SESSION_EXPIRED) {
      state.api.onExpired();
    }
  });
  state.signaling = signaling;
  signaling.connect();
  await route(state);
}

async function onLogin(state, event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await state.api.login($("username").value, $("password").value);
    $("password").value = "";
    await enter(state);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) $("login-error").textContent = t("login.failed");
    else if (err instanceof ApiError && err.status === 429) $("login-error").textContent = t("login.locked");
    else $("login-error").textContent = errorText(err);
  }
}

function signedOut(state, reasonKey) {
  leaveRoom(state);
  state.signaling?.close();
  state.signaling = null;
  state.list.hide();
  $("logout").hidden = true;
  $("whoami").textContent = "";
  show("login-view");
  $("login-error").textContent = reasonKey ? t(reasonKey) : "";
}

async function logout(state) {
  leaveRoom(state);
  await state.api.logout();
  signedOut(state, null);
}

async function relabel(state) {
  await i18n.setLanguage($("language").value, { chosen: true });
  renderWho(state);
  if (state.room) state.room.relabel();
  if (state.api.principal) {
    state.list.renderSites();
    state.list.render();
  }
}

function wire(state) {
  $("language").addEventListener("change", () => relabel(state));
  $("login-form").addEventListener("submit", (e) => onLogin(state, e));
  $("request-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.list.request();
  });
  $("logout").addEventListener("click", () => logout(state));
  $("back").addEventListener("click", () => go("#/"));
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-text").value.trim();
    if (text && state.room?.sendChat(text)) $("chat-text").value = "";
  });
  $("close-consultation").addEventListener("click", () => $("confirm-end").showModal());
  $("confirm-end").addEventListener("close", () => {
    if ($("confirm-end").returnValue === "end") state.room?.end();
  });
  $("snapshot").addEventListener("click", () => state.room?.snapshot());
  $("open-trends").addEventListener("click", () => state.room?.trends.open(1));
  $("close-trends").addEventListener("click", () => state.room?.trends.close());
  for (const button of document.querySelectorAll("#trends-dialog [data-hours]")) {
    button.addEventListener("click", () => state.room?.trends.open(Number(button.dataset.hours)));
  }
  $("fullscreen").addEventListener("click", () => $("video").requestFullscreen?.());
  $("bedside-volume").addEventListener("input", (e) => { $("bedside-audio").volume = Number(e.target.value); });
  $("mute").addEventListener("click", () => {
    const call = state.room?.call;
    if (!call) return;
    call.setMuted(!call.muted);
    $("mute").setAttribute("aria-pressed", String(call.muted));
    $("mute").textContent = t(call.muted ? "call.unmute" : "call.mute");
  });
  $("camera").addEventListener("click", () => {
    const call = state.room?.call;
    if (!call) return;
    call.setCameraOff(!call.cameraOff);
    $("camera").setAttribute("aria-pressed", String(call.cameraOff));
    $("camera").textContent = t(call.cameraOff ? "call.cameraOn" : "call.cameraOff");
  });
  // Push-to-talk to the bedside: held with the pointer, or the space bar on the button.
  const talk = $("talk");
  const talking = (on) => state.room?.setTalking(on);
  talk.addEventListener("pointerdown", () => talking(true));
  for (const kind of ["pointerup", "pointerleave", "pointercancel", "blur"]) {
    talk.addEventListener(kind, () => talking(false));
  }
  talk.addEventListener("keydown", (e) => { if (e.key === " " && !e.repeat) { e.preventDefault(); talking(true); } });
  talk.addEventListener("keyup", (e) => { if (e.key === " ") talking(false); });
  for (const id of ["mic-choice", "camera-choice", "speaker-choice"]) {
    $(id).addEventListener("change", () => state.room?.chooseDevices());
  }
  state.api.onExpired = () => {
    if (!state.api.token) return;
    state.api.forget();
    signedOut(state, "login.expired");
  };
  for (const kind of ["pointerdown", "pointermove", "keydown", "wheel"]) {
    document.addEventListener(kind, () => state.api.touch(), { passive: true });
  }
  window.addEventListener("hashchange", () => route(state));
}

async function start() {
  const state = createState();
  state.list = new ListView(state, (row) => go(`#/consultations/${row.id}`));
  await i18n.setLanguage(i18n.preferredLanguage(null));
  $("language").value = i18n.language;
  wire(state);
  show("login-view");
  if (state.api.restore()) {
    try {
      await state.api.get("/api/auth/me"); // still live? (401 ends it through onExpired)
      await enter(state);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) $("login-error").textContent = errorText(err);
    }
  }
  document.body.dataset.ready = "true";
}

start();
