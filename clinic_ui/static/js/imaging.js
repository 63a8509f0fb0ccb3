// The room's image panel (issue 13): the consultation's studies and series from QIDO-RS with
// a thumbnail each, kept current by `imaging.stored`; the viewer (imaging_viewer.js) with
// presets, tools and cine; the view shared with the other doctor through `imaging.view`
// (imaging_share.js says who leads); and the patient's imaging consent, recorded by the
// bedside site's clinicians. Everything is fetched with the session's token (an <img src>
// could not carry it) and shown as object URLs or bitmaps.
import { ApiError } from "./api.js";
import { t } from "./i18n.js";
import {
  BoundedCache, cineRate, CT_PRESETS, deidentified, fileWindow, first, LatestOnly, numberOf,
  personName, pixelSpacing, presetOf, storedRange, Throttle, ultrasoundRegions,
} from "./imaging_math.js";
import { checkImagingMessage, ImagingMessageError, viewMessage } from "./imaging_messages.js";
import { ShareState } from "./imaging_share.js";
import { ImageViewer } from "./imaging_viewer.js";
import { errorText } from "./list.js";
import { notify } from "./notice.js";
import { PacsPanel, resetPacsView } from "./pacs.js";

const $ = (id) => document.getElementById(id);
const DICOM_JSON = "application/dicom+json";
/** What this page shares is sent at most this often (pointer included). */
const SHARE_EVERY_MS = 100;
/** New instances arrive in bursts (a CT series): the list is asked again once they rest. */
const REFRESH_DEBOUNCE_MS = 300;
/** Instance metadata kept (a consultation holds a few series). */
const METADATA_KEPT = 256;
const THUMBNAIL = "128,128";
const FPS_CHOICES = [5, 10, 15, 20, 25, 30, 40, 50, 60];

/** Clear the panel: nothing of a previous room may show. */
export function resetImagingView() {
  $("imaging-series-list").replaceChildren();
  $("imaging-none").hidden = false;
  $("imaging-error").textContent = "";
  $("imaging-viewer").hidden = true;
  $("imaging-consent").hidden = true;
  $("imaging-consent-state").textContent = "";
  resetPacsView();
}

export class ImagingPanel {
  /** `peerName(id)`: the name of a room's peer (for "following ..."); `link`: the bedside
   *  link (the PACS section speaks to the bedside on it). */
  constructor(state, row, { signaling, link, peerName }) {
    this.api = state.api;
    this.row = row;
    this.signaling = signaling;
    this.peerName = peerName;
    this.base = `/api/consultations/${encodeURIComponent(row.id)}/dicomweb`;
    this.studies = new Map(); // study uid -> DICOM JSON study
    this.series = new Map(); // series uid -> { item, study, instances: [DICOM JSON], thumb, meta }
    this.metadata = new BoundedCache(METADATA_KEPT);
    this.current = null; // { series, index }
    this.share = new ShareState();
    this.lastRemote = null;
    this.controller = new AbortController();
    this.refresher = new LatestOnly(REFRESH_DEBOUNCE_MS);
    this.sender = new Throttle(SHARE_EVERY_MS, (m) => this._send(m), {
      now: () => performance.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id),
    });
    this.pointer = null;
    this.viewer = new ImageViewer($("imaging-canvas"), (url) => this._blob(url, "image/png"));
    this.viewer.mayChange = () => this.share.mayChange;
    this.pacs = new PacsPanel({ link, principal: state.api.principal, row });
    this._wire();
    this._fillFps();
    this.renderConsent();
    this.renderShare();
    this.refresh({ now: true });
  }

  close() {
    this.pacs.close();
    this.controller.abort();
    clearTimeout(this.arrivalTimer);
    this.refresher.cancel();
    this.sender.cancel();
    this.viewer.close();
    for (const s of this.series.values()) if (s.thumb) URL.revokeObjectURL(s.thumb);
    resetImagingView();
  }

  // -- the server ------------------------------------------------------------------------------

  async _fetch(path, accept, init = {}) {
    const response = await fetch(path, {
      ...init,
      signal: this.controller.signal,
      headers: { Accept: accept, Authorization: `Bearer ${this.api.token}`, ...(init.headers ?? {}) },
    });
    if (response.status === 401) this.api.onExpired();
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new ApiError(response.status, typeof data.detail === "string" ? data.detail : response.statusText);
    }
    return response;
  }

  async _json(path) {
    return (await this._fetch(path, DICOM_JSON)).json();
  }

  async _blob(path, accept) {
    return (await this._fetch(path, accept)).blob();
  }

  /** The instance's metadata (WADO-RS), fetched once: a second ask while the first is on
   *  its way (the list's details and a click on the new series) waits for the same answer. */
  async _meta(study, series, sop) {
    if (this.metadata.has(sop)) return this.metadata.get(sop);
    this.metaAsked ??= new Map();
    let asked = this.metaAsked.get(sop);
    if (!asked) {
      asked = this._json(`${this.base}/studies/${study}/series/${series}/instances/${sop}/metadata`)
        .then(([meta]) => {
          this.metadata.set(sop, meta ?? {});
          return meta ?? {};
        })
        .finally(() => this.metaAsked.delete(sop));
      this.metaAsked.set(sop, asked);
    }
    return asked;
  }

  // -- the list --------------------------------------------------------------------------------

  /** Ask QIDO-RS for the consultation's studies, series and instances again (the last of a
   *  burst of calls only; `now`: without waiting for more), and show them. */
  refresh({ now = false } = {}) {
    this.refresher[now ? "now" : "request"](async (isLatest) => {
      try {
        const [studies, series, instances] = await Promise.all([
          this._json(`${this.base}/studies`), this._json(`${this.base}/series`), this._json(`${this.base}/instances`),
        ]);
        if (!isLatest()) return;
        this._index(studies, series, instances);
        $("imaging-error").textContent = "";
      } catch (err) {
        if (err.name === "AbortError") return;
        $("imaging-error").textContent = t("imaging.error", { detail: errorText(err) });
      }
    });
  }

  _index(studies, series, instances) {
    this.studies = new Map(studies.map((s) => [first(s, "0020000D"), s]));
    const bySeries = new Map();
    for (const item of instances) {
      const uid = first(item, "0020000E");
      if (!bySeries.has(uid)) bySeries.set(uid, []);
      bySeries.get(uid).push(item);
    }
    for (const item of series) {
      const uid = first(item, "0020000E");
      const known = this.series.get(uid) ?? { thumb: null, meta: null };
      const list = (bySeries.get(uid) ?? []).sort((a, b) =>
        (numberOf(a, "00200013") ?? 0) - (numberOf(b, "00200013") ?? 0));
      this.series.set(uid, { ...known, item, study: first(item, "0020000D"), uid, instances: list });
    }
    this.renderList();
    for (const s of this.series.values()) this._details(s);
    if (this.current) this._renderImageNav();
    // A view that arrived before its series was listed.
    if (this.pendingView) {
      const view = this.pendingView;
      this.pendingView = null;
      this._apply(view);
    }
  }

  /** A series' thumbnail and first instance's metadata (de-identified, the name as stored). */
  async _details(s) {
    const sop = first(s.instances[0], "00080018");
    if (!sop || s.loading || (s.meta && s.thumb)) return;
    s.loading = true;
    try {
      if (!s.meta) {
        s.meta = await this._meta(s.study, s.uid, sop);
        this.renderList();
      }
      if (!s.thumb) {
        const blob = await this._blob(`${this.base}/studies/${s.study}/series/${s.uid}/instances/${sop}/thumbnail?viewport=${THUMBNAIL}`, "image/jpeg");
        s.thumb = URL.createObjectURL(blob);
        this.renderList();
      }
    } catch (err) {
      if (err.name !== "AbortError") s.failed = errorText(err);
      this.renderList();
    } finally {
      s.loading = false;
    }
  }

  renderList() {
    const list = $("imaging-series-list");
    $("imaging-none").hidden = this.series.size > 0;
    const items = [];
    for (const [studyUid, study] of this.studies) {
      const head = document.createElement("li");
      head.className = "study";
      const name = personName(study);
      const when = first(study, "00080020", "");
      const description = first(study, "00081030", "");
      head.textContent = [name || t("imaging.noName"), description, formatDate(when)].filter(Boolean).join(" · ");
      items.push(head);
      for (const s of this.series.values()) {
        if (s.study === studyUid) items.push(this._seriesItem(s));
      }
    }
    list.replaceChildren(...items);
  }

  _seriesItem(s) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "series";
    button.dataset.series = s.uid;
    button.dataset.modality = first(s.item, "00080060", "");
    button.setAttribute("aria-pressed", String(this.current?.series === s.uid));
    button.disabled = !this.share.mayChange;
    const img = document.createElement("img");
    img.alt = "";
    img.width = 64;
    img.height = 64;
    if (s.thumb) img.src = s.thumb;
    else img.className = "empty";
    const text = document.createElement("span");
    text.className = "series-text";
    const modality = first(s.item, "00080060", "?");
    const description = first(s.item, "0008103E", "") || t("imaging.noDescription");
    const count = s.instances.length;
    const frames = s.instances.reduce((sum, i) => sum + (numberOf(i, "00280008") ?? 1), 0);
    const what = document.createElement("strong");
    what.textContent = `${modality} · ${description}`;
    const size = document.createElement("span");
    if (count === 1) {
      size.textContent = frames > 1 ? t("imaging.oneImageFrames", { frames }) : t("imaging.oneImage");
    } else {
      size.textContent = frames > count ? t("imaging.imagesFrames", { count, frames }) : t("imaging.images", { count });
    }
    const privacy = document.createElement("span");
    privacy.className = "privacy";
    if (s.meta) {
      const removed = deidentified(s.meta);
      privacy.dataset.deidentified = String(removed);
      const name = personName(s.meta);
      privacy.textContent = removed ? t("imaging.deidentified") : t("imaging.identified", { name: name || t("imaging.noName") });
    } else if (s.failed) {
      privacy.textContent = s.failed;
    }
    text.append(what, size, privacy);
    button.append(img, text);
    button.addEventListener("click", () => this.select(s.uid, 0, { local: true }));
    li.append(button);
    return li;
  }

  // -- the viewer ---------------------------------------------------------------------------------

  /** Show image `index` of series `uid`; `local`: the user asked (shared if this page leads). */
  async select(uid, index, { local = false, frame = 1, window } = {}) {
    const s = this.series.get(uid);
    if (!s || !s.instances.length) return;
    if (local && !this.share.mayChange) { this._blocked(); return; }
    index = Math.min(Math.max(0, index), s.instances.length - 1);
    const item = s.instances[index];
    const sop = first(item, "00080018");
    this.current = { series: uid, index };
    $("imaging-viewer").hidden = false;
    let meta = {};
    try {
      meta = await this._meta(s.study, uid, sop);
    } catch (err) {
      $("imaging-error").textContent = t("imaging.error", { detail: errorText(err) });
    }
    if (this.current?.series !== uid || this.current.index !== index) return; // overtaken
    const image = {
      base: `${this.base}/studies/${s.study}/series/${uid}`,
      study: s.study, series: uid, sop,
      modality: first(item, "00080060", ""),
      columns: numberOf(item, "00280011") ?? numberOf(meta, "00280011") ?? 512,
      rows: numberOf(item, "00280010") ?? numberOf(meta, "00280010") ?? 512,
      frames: Math.max(1, numberOf(item, "00280008") ?? numberOf(meta, "00280008") ?? 1),
      spacing: pixelSpacing(meta),
      regions: ultrasoundRegions(meta),
      fileWindow: fileWindow(meta),
      dragFrom: fileWindow(meta) ?? storedRange(meta),
    };
    this.viewer.fps = cineRate(meta);
    $("imaging-fps").value = String(nearest(FPS_CHOICES, this.viewer.fps));
    this.viewer.fps = Number($("imaging-fps").value);
    this.viewer.show(image, { frame, window: window === undefined ? null : window });
    this.renderList();
    this._renderTools();
    this._renderStatus();
    if (local) this._changed();
  }

  _renderImageNav() {
    const s = this.series.get(this.current?.series);
    const count = s?.instances.length ?? 0;
    $("imaging-position").textContent = count ? t("imaging.imageOf", { n: this.current.index + 1, count }) : "";
    $("imaging-prev").disabled = !this.share.mayChange || count < 2;
    $("imaging-next").disabled = !this.share.mayChange || count < 2;
  }

  _renderTools() {
    const image = this.viewer.image;
    if (!image) return;
    const ct = image.modality === "CT";
    for (const button of document.querySelectorAll("#imaging-presets [data-preset]")) {
      const preset = button.dataset.preset;
      button.hidden = preset !== "file" && !ct;
      button.disabled = !this.share.mayChange;
      const active = preset === "file" ? this.viewer.window === null : presetOf(this.viewer.window) === preset;
      button.setAttribute("aria-pressed", String(active));
    }
    const cine = image.frames > 1;
    $("imaging-cine").hidden = !cine;
    const slider = $("imaging-frame");
    slider.max = String(image.frames);
    slider.value = String(this.viewer.frame);
    slider.disabled = !this.share.mayChange;
    $("imaging-play").disabled = !this.share.mayChange;
    $("imaging-frame-prev").disabled = !this.share.mayChange;
    $("imaging-frame-next").disabled = !this.share.mayChange;
    $("imaging-play").setAttribute("aria-pressed", String(this.viewer.playing));
    $("imaging-play").textContent = t(this.viewer.playing ? "imaging.pause" : "imaging.play");
    for (const button of document.querySelectorAll("#imaging-tools [data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === this.viewer.tool));
    }
    this._renderImageNav();
  }

  _renderStatus() {
    const v = this.viewer;
    if (!v.image) return;
    const window = v.window ?? v.image.fileWindow;
    const which = v.window === null ? t("imaging.windowFile") : presetOf(v.window) ? t(`imaging.preset.${presetOf(v.window)}`) : t("imaging.windowCustom");
    $("imaging-window").textContent = window
      ? t("imaging.windowValues", { centre: fmt(window[0]), width: fmt(window[1]), which })
      : t("imaging.windowAuto");
    $("imaging-frame-state").textContent = v.image.frames > 1 ? t("imaging.frameOf", { n: v.frame, count: v.image.frames }) : "";
    $("imaging-zoom").textContent = v.transform ? t("imaging.zoomIs", { percent: Math.round(v.transform.zoom * 100) }) : "";
    $("imaging-measure-result").textContent = v.measurement ? v.measurementText() : "";
    $("imaging-spacing").textContent = v.image.spacing
      ? t("imaging.spacing", { row: fmt(v.image.spacing[0], 4), column: fmt(v.image.spacing[1], 4) })
      : v.image.regions.length ? t("imaging.usRegions") : t("imaging.noSpacing");
    $("imaging-canvas").setAttribute("aria-label", t("imaging.canvasLabel", {
      modality: v.image.modality, image: (this.current?.index ?? 0) + 1, frame: v.frame,
    }));
  }

  _step(delta) {
    if (!this.current) return;
    if (!this.share.mayChange) { this._blocked(); return; }
    const s = this.series.get(this.current.series);
    const count = s.instances.length;
    this.select(s.uid, (this.current.index + delta + count) % count, { local: true, window: this.viewer.window });
  }

  _frameStep(delta) {
    if (!this.viewer.image || this.viewer.image.frames < 2) return;
    if (!this.share.mayChange) { this._blocked(); return; }
    this.viewer.stop();
    this.viewer.setFrame(this.viewer.frame + delta);
    this._changed();
  }

  _togglePlay() {
    if (!this.share.mayChange) { this._blocked(); return; }
    if (this.viewer.playing) this.viewer.stop();
    else this.viewer.play();
    this._renderTools();
  }

  _preset(preset) {
    if (!this.share.mayChange) { this._blocked(); return; }
    this.viewer.setWindow(preset === "file" ? null : CT_PRESETS[preset], { now: true });
    this._changed();
  }

  // -- sharing ------------------------------------------------------------------------------------

  /** The user changed the image, frame or window: sent if this page leads (or may now). */
  _changed() {
    this._renderTools();
    this._renderStatus();
    if (this.share.localChange()) this._queueView();
    this.renderShare();
  }

  _queueView() {
    const v = this.viewer;
    if (!v.image) return;
    try {
      this.sender.push(viewMessage({
        study: v.image.study, series: v.image.series, sop: v.image.sop, frame: v.frame,
        window: v.window, pointer: this.pointer,
      }));
    } catch (err) {
      if (!(err instanceof ImagingMessageError)) throw err;
    }
  }

  _send(message) {
    if (this.share.mode === "leading" && !this.isEnded) this.signaling.send(message);
  }

  /** A room message of ours: `imaging.stored` or `imaging.view`. */
  message(message) {
    try {
      checkImagingMessage(message);
    } catch (err) {
      if (!(err instanceof ImagingMessageError)) throw err;
      console.warn("imaging: a message refused:", err.message);
      return;
    }
    if (message.type === "imaging.stored") {
      this._arrived(message.modality);
      // The first arrival after a quiet spell is listed at once (the doctor waits for it);
      // the rest of a burst (a CT series is hundreds) in one refresh after it.
      const now = Date.now();
      const quiet = now - (this.lastStoredAt ?? 0) > REFRESH_DEBOUNCE_MS;
      this.lastStoredAt = now;
      this.refresh({ now: quiet });
    } else if (message.from && message.from !== this.signaling.peerId) {
      this.lastRemote = message;
      if (this.share.received(message.from)) this._apply(message);
      this.renderShare();
    }
  }

  /** Say once what a burst of new instances was (a CT series is hundreds of them). */
  _arrived(modality) {
    this.arrivals ??= new Map();
    this.arrivals.set(modality, (this.arrivals.get(modality) ?? 0) + 1);
    clearTimeout(this.arrivalTimer);
    this.arrivalTimer = setTimeout(() => {
      const what = [...this.arrivals].map(([m, n]) => (n > 1 ? `${m} ×${n}` : m)).join(", ");
      this.arrivals.clear();
      notify(t("imaging.arrived", { modality: what }));
    }, 1000);
  }

  async _apply(view) {
    const s = this.series.get(view.series);
    const index = s?.instances.findIndex((i) => first(i, "00080018") === view.sop) ?? -1;
    if (index < 0) {
      this.pendingView = view; // not listed yet: once the list has it
      this.refresh();
      return;
    }
    const window = view.window ? [...view.window] : null;
    if (this.viewer.image?.sop !== view.sop) {
      await this.select(view.series, index, { frame: view.frame, window });
    } else {
      this.viewer.stop();
      if (this.viewer.frame !== view.frame) {
        this.viewer.setFrame(view.frame);
        this.viewer.prefetch(view.frame); // the leader's cine goes on: be there first
      }
      const same = (this.viewer.window ?? []).join() === (window ?? []).join();
      if (!same) this.viewer.setWindow(window, { now: true });
    }
    this.viewer.setRemotePointer(view.pointer ? [...view.pointer] : null, this.peerName(view.from) ?? "?");
    this._renderTools();
    this._renderStatus();
  }

  peerJoined() {
    // A newcomer has not seen what this page leads: send it again.
    if (this.share.mode === "leading") this._queueView();
  }

  peerLeft(id) {
    if (this.share.leader === id) this.viewer.setRemotePointer(null);
    this.share.left(id);
    this.renderShare();
  }

  renderShare() {
    const mode = this.share.mode;
    const name = this.share.leader ? this.peerName(this.share.leader) ?? "?" : "";
    const box = $("imaging-share");
    box.dataset.mode = mode;
    $("imaging-share-state").textContent = {
      alone: t("imaging.share.alone"),
      leading: t("imaging.share.leading"),
      following: t("imaging.share.following", { name }),
      independent: t("imaging.share.independent", { name }),
    }[mode];
    $("imaging-take-control").hidden = mode !== "following";
    $("imaging-look-alone").hidden = mode !== "following" && mode !== "leading";
    $("imaging-follow").hidden = mode !== "independent" || !this.share.leader;
    for (const b of document.querySelectorAll("#imaging-series-list button.series")) b.disabled = !this.share.mayChange;
    this._renderTools();
  }

  _blocked() {
    notify(t("imaging.share.blocked", { name: this.peerName(this.share.leader) ?? "?" }), { ms: 4000 });
    $("imaging-take-control").focus();
  }

  takeControl() {
    this.share.takeControl();
    this.viewer.setRemotePointer(null);
    this.renderShare();
    this._queueView();
  }

  lookAlone() {
    this.share.goIndependent();
    this.viewer.setRemotePointer(null);
    this.renderShare();
  }

  follow() {
    this.share.follow();
    if (this.lastRemote && this.share.mode === "following") this._apply(this.lastRemote);
    this.renderShare();
  }

  // -- consent -----------------------------------------------------------------------------------

  /** The clinicians of the bedside (requesting) site record the patient's imaging consent. */
  get mayRecordConsent() {
    const me = this.api.principal;
    return Boolean(me && (me.role === "doctor" || me.role === "technician")
      && me.site === this.row.requesting_site && this.row.state === "active");
  }

  renderConsent() {
    const consent = Boolean(this.row.imaging_consent);
    const badge = $("imaging-consent-state");
    badge.dataset.consent = String(consent);
    badge.textContent = consent ? t("imaging.consent.given") : t("imaging.consent.none");
    const button = $("imaging-consent");
    button.hidden = !this.mayRecordConsent;
    button.textContent = t(consent ? "imaging.consent.withdraw" : "imaging.consent.record");
  }

  askConsent() {
    const consent = !this.row.imaging_consent;
    $("confirm-imaging-consent-title").textContent = t(consent ? "imaging.consent.recordTitle" : "imaging.consent.withdrawTitle");
    $("confirm-imaging-consent-text").textContent = t(consent ? "imaging.consent.recordText" : "imaging.consent.withdrawText");
    const ok = $("confirm-imaging-consent-ok");
    ok.textContent = t(consent ? "imaging.consent.record" : "imaging.consent.withdraw");
    ok.value = consent ? "record" : "withdraw";
    $("confirm-imaging-consent").showModal();
  }

  async setConsent(consent) {
    try {
      const response = await this._fetch(`/api/consultations/${encodeURIComponent(this.row.id)}/imaging-consent`,
        "application/json", {
          method: "PUT", body: JSON.stringify({ consent }), headers: { "Content-Type": "application/json" },
        });
      this.update({ ...this.row, ...(await response.json()) });
      notify(t(consent ? "imaging.consent.recorded" : "imaging.consent.withdrawn"));
    } catch (err) {
      $("imaging-error").textContent = t("imaging.error", { detail: errorText(err) });
    }
  }

  /** The consultation changed (its consent, its state). */
  update(row) {
    this.row = row;
    this.renderConsent();
    this.pacs.update(row);
  }

  /** The room ended: the view is no longer shared (the server relays only in an active one). */
  ended() {
    this.isEnded = true;
    this.row = { ...this.row, state: "closed" };
    this.renderConsent();
    this.pacs.ended();
  }

  relabel() {
    this.pacs.relabel();
    this.renderList();
    this.renderConsent();
    this.renderShare();
    this._fillFps();
    this._renderStatus();
  }

  // -- controls --------------------------------------------------------------------------------

  _fillFps() {
    const select = $("imaging-fps");
    const value = select.value;
    select.replaceChildren(...FPS_CHOICES.map((fps) => {
      const option = document.createElement("option");
      option.value = String(fps);
      option.textContent = t("imaging.fpsValue", { fps });
      return option;
    }));
    select.value = value || "15";
  }

  _wire() {
    const signal = this.controller.signal;
    const on = (id, kind, handler) => $(id).addEventListener(kind, handler, { signal });
    on("imaging-prev", "click", () => this._step(-1));
    on("imaging-next", "click", () => this._step(1));
    on("imaging-play", "click", () => this._togglePlay());
    on("imaging-frame-prev", "click", () => this._frameStep(-1));
    on("imaging-frame-next", "click", () => this._frameStep(1));
    on("imaging-frame", "input", (e) => {
      if (!this.share.mayChange) { this._blocked(); e.target.value = String(this.viewer.frame); return; }
      this.viewer.stop();
      this.viewer.setFrame(Number(e.target.value));
      this._changed();
    });
    on("imaging-fps", "change", (e) => { this.viewer.fps = Number(e.target.value); });
    on("imaging-zoom-in", "click", () => this.viewer.zoomBy(1.25));
    on("imaging-zoom-out", "click", () => this.viewer.zoomBy(0.8));
    on("imaging-reset", "click", () => this.viewer.resetView());
    on("imaging-take-control", "click", () => this.takeControl());
    on("imaging-look-alone", "click", () => this.lookAlone());
    on("imaging-follow", "click", () => this.follow());
    on("imaging-consent", "click", () => this.askConsent());
    on("confirm-imaging-consent", "close", () => {
      const value = $("confirm-imaging-consent").returnValue;
      if (value === "record" || value === "withdraw") this.setConsent(value === "record");
    });
    for (const button of document.querySelectorAll("#imaging-presets [data-preset]")) {
      button.addEventListener("click", () => this._preset(button.dataset.preset), { signal });
    }
    for (const button of document.querySelectorAll("#imaging-tools [data-tool]")) {
      button.addEventListener("click", () => { this.viewer.setTool(button.dataset.tool); this._renderTools(); }, { signal });
    }
    const v = this.viewer;
    v.addEventListener("change", () => this._changed());
    v.addEventListener("shown", () => { this._renderStatus(); $("imaging-frame").value = String(v.frame); });
    v.addEventListener("zoom", () => this._renderStatus());
    v.addEventListener("measured", () => this._renderStatus());
    v.addEventListener("blocked", () => this._blocked());
    v.addEventListener("error", (e) => {
      $("imaging-error").textContent = t("imaging.error", { detail: errorText(e.detail) });
      this._renderTools();
    });
    v.addEventListener("pointer", (e) => {
      this.pointer = e.detail;
      if (this.share.mode === "leading") this._queueView();
    });
    // Keys of the panel beyond the viewer's own: images, frames, cine, tools.
    on("imaging-canvas", "keydown", (e) => {
      const keys = {
        PageUp: () => this._step(-1), PageDown: () => this._step(1),
        ",": () => this._frameStep(-1), ".": () => this._frameStep(1),
        " ": () => this._togglePlay(),
        m: () => { v.setTool(v.tool === "measure" ? "pan" : "measure"); this._renderTools(); },
        w: () => { v.setTool(v.tool === "window" ? "pan" : "window"); this._renderTools(); },
      };
      if (!(e.key in keys) || e.ctrlKey || e.metaKey || e.altKey) return;
      e.preventDefault();
      keys[e.key]();
    });
  }
}

function fmt(value, places = 1) {
  return Number.isInteger(value) ? String(value) : value.toFixed(places).replace(/\.?0+$/, "");
}

function nearest(choices, value) {
  return choices.reduce((best, c) => (Math.abs(c - value) < Math.abs(best - value) ? c : best));
}

function formatDate(da) {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : "";
}
