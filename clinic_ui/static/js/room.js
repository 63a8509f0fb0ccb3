// The consultation room: the signaling socket, the bedside link, presence, chat and ending.
// A Room lives from openRoom() to close(); the vitals it shows are VitalsView's.
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { errorText } from "./list.js";
import { siteName } from "./format.js";
import { BedsideLink } from "./peer.js";
import { CloseCode } from "./protocol.js";
import { Signaling } from "./signaling.js";
import { VitalsView } from "./vitals.js";

const $ = (id) => document.getElementById(id);

/** Open `row`'s room in the room view; state.room is set to it. */
export async function openRoom(state, row) {
  $("room-error").textContent = "";
  $("room-ended").hidden = true;
  $("room-title").textContent = t("consultations.from", {
    from: siteName(state.sites, row.requesting_site), to: siteName(state.sites, row.consulting_site),
  });
  $("close-consultation").hidden = !row.allowed_actions.includes("close");
  for (const id of ["peers", "chat-log"]) $(id).replaceChildren();
  $("video").srcObject = null;
  let iceServers = [];
  try {
    iceServers = (await state.api.get("/api/ice-servers")).ice_servers.map((s) => ({
      urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined,
    }));
  } catch (err) {
    $("room-error").textContent = errorText(err);
  }
  state.room = new Room(state, row, iceServers);
  return state.room;
}

export class Room {
  constructor(state, row, iceServers) {
    this.state = state;
    this.row = row;
    this.peers = new Map();
    this.vitals = new VitalsView();
    this.signaling = new Signaling(() => state.api.token);
    this.link = new BedsideLink(this.signaling, iceServers);
    this.signaling.addEventListener("message", (e) => this._onSignal(e.detail));
    this.signaling.addEventListener("down", (e) => {
      // The session is over (idle too long, or signed out elsewhere): nothing to reconnect.
      if (e.detail.code === CloseCode.UNAUTHORIZED || e.detail.code === CloseCode.SESSION_EXPIRED) {
        state.api.onExpired();
      } else {
        this.setLinkState("signaling.lost");
      }
    });
    this.link.addEventListener("state", (e) => this.setLinkState(`link.${e.detail}`));
    this.link.addEventListener("video", (e) => { $("video").srcObject = e.detail; });
    this.link.addEventListener("waveform", (e) => this.vitals.waveform(e.detail));
    this.link.addEventListener("event", (e) => this.vitals.event(e.detail));
    this.link.addEventListener("refused", (e) => {
      $("room-error").textContent = t("error.server", { detail: e.detail });
    });
    this.setLinkState("link.waiting");
    this.signaling.consultationId = row.id; // joined on every welcome, reconnections included
    this.signaling.connect();
    const draw = () => {
      this.vitals.draw();
      this.frame = requestAnimationFrame(draw);
    };
    this.frame = requestAnimationFrame(draw);
    this.ticker = setInterval(() => this.vitals.renderNumerics(), 1000);
  }

  close() {
    cancelAnimationFrame(this.frame);
    clearInterval(this.ticker);
    this.signaling.leave();
    this.signaling.close();
    this.link.close();
  }

  setLinkState(key) {
    const badge = $("link-state");
    badge.textContent = t(`room.${key}`);
    badge.dataset.state = key;
    badge.className = `badge ${key.split(".")[1]}`;
  }

  relabel() {
    this.setLinkState($("link-state").dataset.state || "link.waiting");
    this.vitals.relabel();
    this._renderPeers();
  }

  sendChat(text) {
    return this.signaling.send({ type: "chat", text });
  }

  async end() {
    try {
      await this.state.api.post(`/api/consultations/${this.row.id}/close`);
    } catch (err) {
      $("room-error").textContent = errorText(err);
    }
  }

  _onSignal(message) {
    switch (message.type) {
      case "joined":
        this.peers = new Map(message.peers.map((p) => [p.peer_id, p]));
        this._renderPeers();
        break;
      case "peer-joined":
        this.peers.set(message.peer.peer_id, message.peer);
        this._renderPeers();
        break;
      case "peer-left":
        this.peers.delete(message.peer_id);
        this.link.peerLeft(message.peer_id);
        this._renderPeers();
        if (message.reason === "closed") this._ended();
        break;
      case "offer":
        this.link.acceptOffer(message).catch((err) => { $("room-error").textContent = String(err); });
        break;
      case "candidate":
        this.link.addCandidate(message);
        break;
      case "chat":
        this._addChat(message);
        break;
      case "consultation-state":
        if (message.consultation.state === "closed" || message.consultation.state === "cancelled") this._ended();
        break;
      case "error":
        $("room-error").textContent = t("error.server", { detail: message.reason });
        if (message.ref === "join") this._ended();
        break;
    }
  }

  _ended() {
    $("room-ended").hidden = false;
    $("close-consultation").hidden = true;
    this.link.closeConnection();
  }

  _renderPeers() {
    $("peers").replaceChildren(...[...this.peers.values()].map((p) => {
      const li = document.createElement("li");
      const role = p.kind === "gateway" ? t("role.gateway") : t(`role.${p.role}`);
      li.textContent = `${p.name} · ${role} · ${siteName(this.state.sites, p.site)}`;
      return li;
    }));
  }

  _addChat(message) {
    const li = document.createElement("li");
    const who = document.createElement("div");
    who.className = "who";
    const when = message.at ? new Date(message.at).toLocaleTimeString(i18n.language) : "";
    who.textContent = `${message.sender_name ?? "?"} · ${siteName(this.state.sites, message.sender_site ?? "")} · ${when}`;
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text; // text, never HTML: chat is not trusted markup
    li.append(who, text);
    $("chat-log").append(li);
    li.scrollIntoView({ block: "nearest" });
  }
}
