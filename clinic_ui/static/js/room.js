// The consultation room: the bedside link (peer.js) with its waveforms (waveforms.js) and
// vital signs (numerics.js), the call
// between the clinicians (call.js), presence, chat and ending. A Room lives from openRoom()
// to close(); it uses the session's signaling socket (one per tab), joined to this room.
import { t } from "./i18n.js";
import { AlarmView } from "./alarms.js";
import { Call } from "./call.js";
import { CameraTiles, resetCameraView } from "./cameras.js";
import { LatencyOverlay, ReceiverTuning } from "./latency.js";
import { formatDuration, formatTime, siteName } from "./format.js";
import { ImagingPanel, resetImagingView } from "./imaging.js";
import { errorText } from "./list.js";
import { notify } from "./notice.js";
import { BedsideLink } from "./peer.js";
import { ConsultationAction } from "./protocol.js";
import { NumericsView } from "./numerics.js";
import { OutageReview } from "./outage.js";
import { TrendsView } from "./trends.js";
import { WaveformView } from "./waveforms.js";

const $ = (id) => document.getElementById(id);
/** After a new bedside connection's hello, when the re-sent values have arrived. */
const MISSED_CHECK_MS = 3000;

/** Clear the room view: nothing of a previous room may show before this one is up. Call it
 *  before anything is awaited. */
export function resetRoomView() {
  setLinkState("link.waiting");
  $("room-title").textContent = "";
  $("room-error").textContent = "";
  $("room-ended").hidden = true;
  $("close-consultation").hidden = true;
  $("patient-banner").hidden = true;
  resetCameraView();
  for (const id of ["participants", "chat-log", "room-summary", "traces", "numerics", "devices"]) {
    $(id).replaceChildren();
  }
  resetImagingView();
}

/** Open `row`'s room in the room view; state.room is set to it. */
export async function openRoom(state, row) {
  resetRoomView();
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

function setLinkState(key) {
  const badge = $("link-state");
  badge.textContent = t(`room.${key}`);
  badge.dataset.state = key;
  badge.className = `badge ${key.split(".")[1]}`;
}

export class Room {
  constructor(state, row, iceServers) {
    this.state = state;
    this.row = row;
    this.peers = new Map(); // peer id -> Peer (everyone online in the room)
    this.chat = new Map(); // message id -> chat message, in arrival order
    this.ended = row.state === "closed" || row.state === "cancelled";
    this.videoState = null; // the last `video` event of the bedside link
    this.waveforms = new WaveformView();
    const me = state.api.principal;
    this.alarms = new AlarmView(state.signaling, {
      canAcknowledge: me?.role === "doctor",
      canEditLimits: me?.role === "doctor" && me?.site === row.consulting_site,
    });
    this.numerics = new NumericsView({
      canChoose: state.api.principal?.role === "technician",
      choose: (code, device) => this.link.sendEvent({ type: "source", code, device }),
    });
    this.signaling = state.signaling;
    this.trends = new TrendsView(state.api, row.id);
    this.link = new BedsideLink(this.signaling, iceServers);
    this.cameras = new CameraTiles({ send: (message) => this.link.sendEvent(message) });
    this.outage = new OutageReview(this.link, this.waveforms); // waveforms kept through a gap
    // The bedside video rendered on arrival, and the engineer's overlay (F9): latency.js.
    // It asks the bedside for a playout delay when the link loses or delays packets.
    this.tuning = new ReceiverTuning(() => this.link.pc, { send: (message) => this.link.sendEvent(message) });
    this.latency = new LatencyOverlay({
      video: $("video"),
      waveforms: this.waveforms,
      tuning: this.tuning,
      camera: () => $("room-camera-tile").dataset.camera || "room",
      send: (message) => this.link.sendEvent(message),
    });
    this.call = new Call(this.signaling, iceServers);
    this.imaging = new ImagingPanel(state, row, {
      signaling: this.signaling, link: this.link, peerName: (id) => this.peers.get(id)?.name,
    });
    this._listeners = [];
    this._on(this.signaling, "message", (e) => this._onSignal(e.detail));
    // The bedside's media does not pass through the server: while the link is up, losing
    // the server is said beside the badge, not instead of it.
    this._on(this.signaling, "down", () => {
      if (this.ended) return;
      if (this.link.state === "connected") $("signaling-state").hidden = false;
      else setLinkState("signaling.lost");
    });
    this._on(this.signaling, "welcome", () => {
      $("signaling-state").hidden = true;
      // Back with the server: the badge says the bedside link's own state again.
      if (!this.ended && $("link-state").dataset.state === "signaling.lost") {
        setLinkState(`link.${this.link.state}`);
      }
    });
    this.link.addEventListener("state", (e) => { if (!this.ended) setLinkState(`link.${e.detail}`); });
    this.link.addEventListener("video", (e) => this.cameras.track(e.detail));
    this.link.addEventListener("audio", (e) => this._bedsideAudio(e.detail));
    this.link.addEventListener("hello", (e) => {
      this.numerics.hello(e.detail);
      // What the link missed shows once the new connection has caught up.
      clearTimeout(this._missedCheck);
      this._missedCheck = setTimeout(() => this._reportMissed(), MISSED_CHECK_MS);
      this.alarms.restart();
      this._renderAudioKind();
      this.videoState = null; // a new connection: its adaptation starts afresh
      this.tuning.connected(); // and its playout delay
      this._renderVideoState();
    });
    this.link.addEventListener("talk", (e) => { $("talk").hidden = !e.detail; });
    this.link.addEventListener("waveform", (e) => this.waveforms.packet(e.detail));
    this.link.addEventListener("event", (e) => this._bedsideEvent(e.detail));
    this.link.addEventListener("refused", (e) => {
      $("room-error").textContent = t("error.server", { detail: e.detail });
    });
    for (const kind of ["participants", "quality", "speaking"]) {
      this.call.addEventListener(kind, () => this._renderParticipants());
    }
    this.call.addEventListener("media", (e) => this._onMedia(e.detail));
    this.renderTitle();
    this.renderPatient();
    $("close-consultation").hidden = !row.allowed_actions.includes(ConsultationAction.CLOSE);
    this._setChatEnabled(!this.ended);
    this._renderParticipants();
    if (this.ended) {
      this._showEnded();
    } else {
      this.signaling.join(row.id);
      this.call.startMedia().then(() => this._listDevices());
    }
    const draw = () => {
      this.latency.drawn(this.waveforms.draw());
      this.frame = requestAnimationFrame(draw);
    };
    this.frame = requestAnimationFrame(draw);
    this.ticker = setInterval(() => this.numerics.renderNumerics(), 1000);
  }

  /** A message of the bedside's events channel, to the view it concerns. */
  _bedsideEvent(message) {
    switch (message.type) {
      case "channel":
      case "quality":
        this.waveforms.event(message);
        break;
      case "numeric":
      case "status":
      case "sources":
        this.numerics.event(message);
        break;
      case "alarm":
      case "limits":
        this.alarms.event(message);
        break;
      case "video":
        this.videoState = message;
        this.tuning.video(message);
        this._renderVideoState();
        break;
      case "cameras":
        this.cameras.cameras(message);
        break;
      case "kept-frame":
        this.cameras.kept(message);
        break;
    }
  }

  /** Say how many values each device measured while the link was down that never reached
   *  this page: the gateway's journal gave them to the server, so Trends has them. */
  _reportMissed() {
    for (const device of this.numerics.counts.keys()) {
      const missed = this.numerics.missed(device);
      if (missed > 0) notify(t("room.numerics.missed", { count: missed, device }), { ms: 15000 });
    }
  }

  /** What the bedside's video adaptation sends us, said when it is less than the full
   *  picture (the picture itself shows a reduced one as coarser, a paused one as frozen). */
  _renderVideoState() {
    const badge = $("video-state");
    const state = this.videoState;
    badge.hidden = !state || state.mode === "full";
    if (badge.hidden) return;
    badge.dataset.mode = state.mode;
    badge.textContent = state.mode === "paused"
      ? t("room.video.paused")
      : t("room.video.reduced", { height: state.height, fps: state.fps });
  }

  _on(target, kind, handler) {
    target.addEventListener(kind, handler);
    this._listeners.push([target, kind, handler]);
  }

  close() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this._missedCheck);
    this.alarms.close();
    clearInterval(this.ticker);
    for (const [target, kind, handler] of this._listeners) target.removeEventListener(kind, handler);
    this.signaling.leave();
    this.link.close();
    this.cameras.close();
    this.call.close();
    this.trends.close();
    this.imaging.close();
    this.outage.close();
    this.latency.close();
    this.tuning.close();
    $("bedside-audio").srcObject = null;
    $("bedside-audio-box").hidden = true;
    $("talk").hidden = true;
  }

  /** Who the patient is, as far as this user may see, and to whom the consultation shows
   *  it (the server sends only what this user may see). */
  renderPatient() {
    const patient = this.row.patient;
    $("patient-banner").hidden = !patient;
    if (!patient) return;
    const sex = t(`patient.sex.${patient.sex}`);
    const name = patient.identified && patient.name
      ? `${patient.name}${patient.name_romanised ? ` (${patient.name_romanised})` : ""}`
      : t("patient.pseudonymous", { id: patient.pseudonym });
    $("patient-who").textContent = name;
    const age = patient.age !== null && patient.age !== undefined
      ? t("patient.ageYears", { age: patient.age }) : patient.age_band ? t("patient.ageBand", { band: patient.age_band }) : "";
    const place = [patient.ward, patient.bed].filter(Boolean).join(" / ");
    $("patient-details").textContent = [age, sex, place, patient.identified ? patient.pseudonym : ""]
      .filter(Boolean).join(" · ");
    $("patient-allergies-line").textContent = patient.allergies.length
      ? t("patient.allergiesAre", { list: patient.allergies.join(", ") }) : t("patient.noAllergies");
    const mine = this.state.api.principal?.site === this.row.requesting_site;
    $("patient-visibility").textContent = this.row.consent_cross_border
      ? t("patient.shownBoth")
      : mine ? t("patient.shownHereOnly") : t("patient.withheld");
    $("patient-banner").dataset.identified = String(patient.identified);
  }

  renderTitle() {
    $("room-title").textContent = t("consultations.from", {
      from: siteName(this.state.sites, this.row.requesting_site),
      to: siteName(this.state.sites, this.row.consulting_site),
    });
  }

  relabel() {
    this.renderTitle();
    this.renderPatient();
    setLinkState($("link-state").dataset.state || "link.waiting");
    this.waveforms.relabel();
    this.outage.relabel();
    this.numerics.relabel();
    this.cameras.relabel();
    this.alarms.relabel();
    this.imaging.relabel();
    this._renderParticipants();
    this._renderChat();
    this._renderAudioKind();
    this._renderVideoState();
    this._renderMediaError(this.call.mediaError);
    if (this.ended) this._showEnded();
  }

  /** Why this page sends no microphone or camera, if it does not (in the page's language). */
  _renderMediaError(error) {
    const note = $("call-media-error");
    note.hidden = !error;
    note.textContent = error ? t(`call.error.${error}`) : "";
  }

  /** The server told the list of a change to this consultation. */
  update(row) {
    this.row = row;
    this.renderPatient();
    this.imaging.update(row);
    $("close-consultation").hidden = this.ended || !row.allowed_actions.includes(ConsultationAction.CLOSE);
    if ((row.state === "closed" || row.state === "cancelled") && !this.ended) this._end();
  }

  sendChat(text) {
    if (this.ended) return false;
    return this.signaling.send({ type: "chat", text });
  }

  /** End the consultation (after the user confirmed it). */
  async end() {
    try {
      this.update(await this.state.api.post(`/api/consultations/${this.row.id}/close`));
    } catch (err) {
      $("room-error").textContent = errorText(err);
    }
  }

  // -- signaling -------------------------------------------------------------------------

  _onSignal(message) {
    const ours = !message.consultation_id || message.consultation_id === this.row.id;
    switch (message.type) {
      case "joined":
        if (message.consultation.id !== this.row.id) return;
        this.peers = new Map(message.peers.map((p) => [p.peer_id, p]));
        for (const chat of message.chat ?? []) this.chat.set(chat.id, chat);
        this._renderChat();
        // We are the newcomer: we offer to the clinicians already here.
        this.call.sync(this._clinicians(), { initiator: true });
        this._renderParticipants();
        this.imaging.refresh(); // what was stored while this page was away
        break;
      case "peer-joined":
        if (!ours) return;
        this.peers.set(message.peer.peer_id, message.peer);
        if (this._isCallPeer(message.peer)) this.call.joined(message.peer);
        this._renderParticipants();
        this.imaging.peerJoined(message.peer);
        break;
      case "peer-left":
        if (!ours) return;
        this.peers.delete(message.peer_id);
        this.link.peerLeft(message.peer_id, message.reason);
        this.call.remove(message.peer_id, message.reason);
        this.imaging.peerLeft(message.peer_id);
        this._renderParticipants();
        if (message.reason === "closed") this._end();
        break;
      case "offer":
      case "answer":
      case "candidate":
        this._relayed(message);
        break;
      case "chat":
        if (message.id !== undefined) this.chat.set(message.id, message);
        else this.chat.set(`local-${this.chat.size}`, message);
        this._renderChat();
        break;
      case "imaging.stored":
      case "imaging.view":
        if (ours) this.imaging.message(message);
        break;
      case "consultation-state":
        if (message.consultation.id !== this.row.id) return;
        if (message.consultation.state === "closed" || message.consultation.state === "cancelled") this._end();
        break;
      case "error":
        if (message.ref === "join" || message.code === "not_active") {
          if (message.code === "not_active") this._end();
        }
        $("room-error").textContent = t("error.server", { detail: message.reason });
        break;
    }
  }

  /** Offers, answers and candidates: from the gateway to the bedside link, from another
   *  clinician to the call. */
  _relayed(message) {
    const sender = this.peers.get(message.from);
    if (sender?.kind === "gateway") {
      if (message.type === "offer") {
        this.link.acceptOffer(message).catch((err) => { $("room-error").textContent = String(err); });
      } else if (message.type === "candidate") {
        this.link.addCandidate(message);
      }
    } else if (sender && this._isCallPeer(sender)) {
      this.call.signal(message);
    }
  }

  _isCallPeer(peer) {
    const me = this.state.api.principal;
    const clinician = peer.kind === "user" && (peer.role === "doctor" || peer.role === "technician");
    // Our own other tabs are not called: they would echo us back.
    return clinician && peer.peer_id !== this.signaling.peerId
      && !(peer.principal_id === me?.id && peer.kind === me?.kind);
  }

  _clinicians() {
    return [...this.peers.values()].filter((p) => this._isCallPeer(p));
  }

  // -- ending ------------------------------------------------------------------------------

  _end() {
    if (this.ended) return;
    this.ended = true;
    this.row = { ...this.row, state: "closed" };
    this.signaling.leave();
    this.link.closeConnection();
    this.call.close();
    this._showEnded();
  }

  async _showEnded() {
    $("close-consultation").hidden = true;
    setLinkState("link.ended");
    this.waveforms.freeze();
    this.numerics.freeze();
    this.alarms.freeze();
    this.imaging.ended();
    this._setChatEnabled(false);
    $("room-ended").hidden = false;
    let summary = null;
    try {
      summary = await this.state.api.get(`/api/consultations/${this.row.id}/summary`);
    } catch {
      // The banner still says it ended; the summary is what could not be fetched.
    }
    const ended = summary?.ended_at ?? this.row.ended_at;
    $("room-ended-text").textContent = ended
      ? t("room.endedAt", { time: formatTime(ended) })
      : t("room.ended");
    if (!summary) return;
    const rows = [
      ["summary.duration", formatDuration(summary.duration_s)],
      ["summary.participants", summary.participants.map((p) => `${p.name} (${siteName(this.state.sites, p.site)})`).join(", ")],
      ["summary.messages", String(summary.messages)],
      ["summary.snapshots", String(summary.snapshots)],
    ];
    $("room-summary").replaceChildren(...rows.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = t(key);
      const dd = document.createElement("dd");
      dd.dataset.key = key;
      dd.textContent = value;
      return [dt, dd];
    }));
  }

  _setChatEnabled(enabled) {
    $("chat-text").disabled = !enabled;
    $("chat-form").querySelector("button").disabled = !enabled;
    $("chat-text").placeholder = t(enabled ? "room.chatPlaceholder" : "room.chatClosed");
  }

  // -- media -----------------------------------------------------------------------------

  _bedsideAudio(stream) {
    const audio = $("bedside-audio");
    audio.srcObject = stream;
    audio.volume = Number($("bedside-volume").value);
    if (this.call.speakerId && audio.setSinkId) audio.setSinkId(this.call.speakerId).catch(() => {});
    $("bedside-audio-box").hidden = false;
    this._renderAudioKind();
  }

  _renderAudioKind() {
    const kind = this.link.hello?.audio;
    $("bedside-audio-label").textContent = kind ? t(`room.audio.${kind}`) : t("room.audio.voice");
    $("headphones-note").hidden = kind !== "stethoscope";
  }

  _onMedia({ stream, error }) {
    this._renderMediaError(error);
    const mic = stream?.getAudioTracks()[0];
    // Talk-back sends a clone of the microphone, on only while the button is held.
    if (mic) {
      const talk = mic.clone();
      talk.enabled = false;
      this.link.setTalkTrack(talk);
    }
    this._renderParticipants();
  }

  async _listDevices() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    const fill = (id, kind, current) => {
      const select = $(id);
      select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, k) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || `${kind} ${k + 1}`;
        return option;
      }));
      if (current) select.value = current;
      select.disabled = select.options.length === 0;
    };
    const local = this.call.local;
    fill("mic-choice", "audioinput", local?.getAudioTracks()[0]?.getSettings().deviceId);
    fill("camera-choice", "videoinput", local?.getVideoTracks()[0]?.getSettings().deviceId);
    fill("speaker-choice", "audiooutput", this.call.speakerId);
  }

  async chooseDevices() {
    await this.call.startMedia({ audioId: $("mic-choice").value, videoId: $("camera-choice").value });
    await this.call.setSpeaker($("speaker-choice").value);
    const bedside = $("bedside-audio");
    if (bedside.setSinkId) await bedside.setSinkId($("speaker-choice").value).catch(() => {});
  }

  setTalking(on) {
    if (this.link.talkTrack) this.link.talkTrack.enabled = on;
    $("talk").setAttribute("aria-pressed", String(on));
  }

  async snapshot() {
    const video = $("video");
    if (!video.videoWidth) return;
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    try {
      await this.state.api.postBytes(`/api/consultations/${this.row.id}/snapshots`, blob);
      notify(t("room.snapshotStored"));
    } catch (err) {
      $("room-error").textContent = errorText(err);
    }
  }

  // -- presence and chat -------------------------------------------------------------------

  _renderParticipants() {
    // A person with several tabs is one participant: grouped by who they are. Tiles are
    // kept and updated in place (a video element made anew would blink and restart).
    const people = new Map();
    for (const p of this.peers.values()) {
      const key = `${p.kind}:${p.principal_id}`;
      const person = people.get(key) ?? { ...p, peerIds: [] };
      person.peerIds.push(p.peer_id);
      people.set(key, person);
    }
    const me = this.state.api.principal;
    this._tiles ??= new Map();
    for (const [key, tile] of this._tiles) {
      if (!people.has(key)) { tile.li.remove(); this._tiles.delete(key); }
    }
    const list = $("participants");
    for (const [key, person] of people) {
      const self = person.kind === me?.kind && person.principal_id === me?.id;
      const link = person.peerIds.map((id) => this.call.linkOf(id)).find(Boolean);
      let tile = this._tiles.get(key);
      if (!tile) {
        tile = this._newTile(key, self);
        this._tiles.set(key, tile);
      }
      if (tile.li.parentElement !== list) list.append(tile.li);
      this._updateTile(tile, person, self, link);
    }
  }

  _newTile(key, self) {
    const li = document.createElement("li");
    li.className = "participant";
    li.dataset.principal = key;
    const media = document.createElement("video");
    media.autoplay = true;
    media.playsInline = true;
    media.muted = self; // never hear ourselves
    media.className = self ? "self" : "remote";
    media.hidden = true;
    const name = document.createElement("div");
    name.className = "who";
    const status = document.createElement("div");
    status.className = "status";
    li.append(media, name, status);
    return { li, media, name, status };
  }

  _updateTile(tile, person, self, link) {
    const role = person.kind === "gateway" ? t("role.gateway") : t(`role.${person.role}`);
    const label = `${person.name} · ${role} · ${siteName(this.state.sites, person.site)}`;
    tile.name.textContent = self ? `${label} (${t("call.you")})` : label;
    const stream = person.kind === "user" ? (self ? this.call.local : link?.stream) : null;
    if (tile.media.srcObject !== (stream ?? null)) {
      tile.media.srcObject = stream ?? null;
      if (!self && this.call.speakerId && tile.media.setSinkId) {
        tile.media.setSinkId(this.call.speakerId).catch(() => {});
      }
    }
    // A stream without video still plays its sound through the (hidden) element.
    tile.media.hidden = !stream?.getVideoTracks().length;
    tile.media.setAttribute("aria-label", t("call.videoOf", { name: person.name }));
    const notes = [];
    if (self ? this.call.muted : link?.remoteState.muted) notes.push(t("call.muted"));
    if (self ? this.call.cameraOff : link?.remoteState.cameraOff) notes.push(t("call.cameraIsOff"));
    if (person.peerIds.length > 1) notes.push(t("call.tabs", { n: person.peerIds.length }));
    const quality = link?.quality;
    tile.li.dataset.quality = quality?.state ?? "";
    if (quality && quality.state !== "good") notes.push(t(`call.quality.${quality.state}`));
    tile.status.title = quality ? t("call.stats", {
      rtt: quality.rtt === null ? "–" : Math.round(quality.rtt * 1000),
      loss: quality.loss === null ? "–" : (quality.loss * 100).toFixed(1),
      kbps: quality.kbps === null ? "–" : Math.round(quality.kbps),
    }) : "";
    tile.status.textContent = notes.join(" · ");
    const meter = self ? this.call.meters.get("self") : person.peerIds.map((id) => this.call.meterOf(id)).find(Boolean);
    tile.li.classList.toggle("speaking", Boolean(meter?.speaking));
  }

  _renderChat() {
    const items = [...this.chat.values()].map((message) => {
      const li = document.createElement("li");
      if (message.id !== undefined) li.dataset.id = message.id;
      const who = document.createElement("div");
      who.className = "who";
      const when = message.at ? formatTime(message.at) : "";
      who.textContent = `${message.sender_name ?? "?"} · ${siteName(this.state.sites, message.sender_site ?? "")} · ${when}`;
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = message.text; // text, never HTML: chat is not trusted markup
      li.append(who, text);
      return li;
    });
    $("chat-log").replaceChildren(...items);
    items.at(-1)?.scrollIntoView({ block: "nearest" });
  }
}
