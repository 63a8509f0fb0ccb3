// The clinic app: sign in, the consultation list (list.js), and the consultation room
// (room.js, vitals.js), in Japanese, Korean or English. One state object (state.js) is
// created here and passed to each view.
import { ApiError } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { errorText, requestConsultation, showList } from "./list.js";
import { siteName } from "./format.js";
import { openRoom } from "./room.js";
import { createState } from "./state.js";

const $ = (id) => document.getElementById(id);

function show(view) {
  for (const id of ["login-view", "list-view", "room-view"]) $(id).hidden = id !== view;
}

function leaveRoom(state) {
  if (!state.room) return;
  state.room.close();
  state.room = null;
}

async function toList(state) {
  leaveRoom(state);
  show("list-view");
  await showList(state, (row) => toRoom(state, row));
}

async function toRoom(state, row) {
  leaveRoom(state);
  show("room-view");
  await openRoom(state, row);
}

function renderWho(state) {
  const p = state.api.principal;
  $("whoami").textContent = p ? `${p.name} · ${t(`role.${p.role}`)} · ${siteName(state.sites, p.site)}` : "";
}

async function onLogin(state, event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const principal = await state.api.login($("username").value, $("password").value);
    state.sites = await state.api.get("/api/sites");
    const site = state.sites.find((s) => s.code === principal.site);
    if (!localStorage.getItem("telemed.language")) {
      await i18n.setLanguage(i18n.preferredLanguage(site?.language));
      $("language").value = i18n.language;
    }
    $("password").value = "";
    renderWho(state);
    $("logout").hidden = false;
    await toList(state);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) $("login-error").textContent = t("login.failed");
    else if (err instanceof ApiError && err.status === 429) $("login-error").textContent = t("login.locked");
    else $("login-error").textContent = errorText(err);
  }
}

function signedOut(state, reasonKey) {
  leaveRoom(state);
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
  await i18n.setLanguage($("language").value);
  renderWho(state);
  if (state.room) state.room.relabel();
  else if (state.api.principal && !$("list-view").hidden) await toList(state);
}

async function start() {
  const state = createState();
  await i18n.setLanguage(i18n.preferredLanguage(null));
  $("language").value = i18n.language;
  $("language").addEventListener("change", () => relabel(state));
  $("login-form").addEventListener("submit", (e) => onLogin(state, e));
  $("request-form").addEventListener("submit", (e) => {
    e.preventDefault();
    requestConsultation(state, (row) => toRoom(state, row));
  });
  $("logout").addEventListener("click", () => logout(state));
  $("back").addEventListener("click", () => toList(state));
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-text").value.trim();
    if (text && state.room?.sendChat(text)) $("chat-text").value = "";
  });
  $("close-consultation").addEventListener("click", () => state.room?.end());
  state.api.onExpired = () => {
    if (!state.api.token) return;
    state.api.forget();
    signedOut(state, "login.expired");
  };
  for (const kind of ["pointerdown", "pointermove", "keydown", "wheel"]) {
    document.addEventListener(kind, () => state.api.touch(), { passive: true });
  }
  show("login-view");
  document.body.dataset.ready = "true";
}

start();
