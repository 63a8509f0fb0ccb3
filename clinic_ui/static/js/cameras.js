// The bedside's cameras in the room: one labelled tile each. The gateway sends a video track
// per camera, each on its own transceiver, and once the link opens a `cameras` event naming
// each transceiver's media id (mid): the room camera goes to the room tile (#video), every
// other camera gets a tile of its own. Before that event (or from a gateway that sends
// none) the link's first video is the room camera.
//
// A diagnostic camera (an ultrasound's video output) is sent as captured. On its tile,
// Freeze draws the current video frame to a canvas and holds it; Keep as image asks the
// bedside (`keep-frame`) to keep the frame as a DICOM Secondary Capture in the consultation,
// and its answer (`kept-frame`) is shown on the tile; Live returns to the video. The frozen
// picture's bedside stamp names its frame: Freeze asks the bedside to hold that frame as
// captured (`hold-frame`), and Keep names it, so the frame kept is the one the doctor froze
// however long they took; when the picture had no readable stamp (or the bedside no
// longer held the frame) the bedside keeps its newest, and the tile says so, with when
// that frame was captured beside when the picture was frozen here.
import { formatTime } from "./format.js";
import { t } from "./i18n.js";
import { readStamp, STAMP_SIZE } from "./stamp.js";

const $ = (id) => document.getElementById(id);
/** A keep not answered by then is said to have no answer (the link may have dropped). */
const KEEP_ANSWER_MS = 30000;

/** Remove every camera tile but the room camera's (a new room starts empty). */
export function resetCameraView() {
  for (const tile of document.querySelectorAll("#camera-tiles .camera-tile:not(#room-camera-tile)")) {
    tile.remove();
  }
  $("video").srcObject = null;
  $("room-camera-label").textContent = t("camera.room");
  $("room-camera-tile").hidden = false;
}

export class CameraTiles {
  /** `send(message)`: put a message on the bedside link's events channel (false: down). */
  constructor({ send }) {
    this.send = send;
    this.streams = new Map(); // mid -> MediaStream (this connection's video tracks)
    this.firstMid = null; // the first video of this connection: the room camera until told
    this.list = null; // the last `cameras` event's cameras
    this.tiles = new Map(); // camera name -> tile (cameras other than the room tile's)
    this.pending = new Map(); // keep request id -> { tile, timer }
    this.requests = 0;
  }

  /** A video track of the bedside link: `{ stream, mid, index }` (index 0: a new
   *  connection's first, whose `cameras` event is yet to come). */
  track({ stream, mid, index }) {
    const key = mid ?? `track-${index}`;
    if (index === 0) {
      this.streams.clear();
      this.list = null;
      this.firstMid = key;
    }
    this.streams.set(key, stream);
    this._render();
  }

  /** The bedside's `cameras` event. */
  cameras(message) {
    this.list = message.cameras;
    this._render();
  }

  _render() {
    const video = $("video");
    const list = this.list ?? [{ name: "room", purpose: "room", mid: this.firstMid }];
    const room = list.find((c) => c.purpose === "room");
    this._show(video, room ? this.streams.get(room.mid) : null);
    $("room-camera-label").textContent = room ? this._label(room) : t("camera.room");
    video.setAttribute("aria-label", t("camera.videoOf", { label: $("room-camera-label").textContent }));
    $("room-camera-tile").dataset.camera = room?.name ?? "";
    // A bedside with no room camera (only an ultrasound, say) shows no empty room tile.
    $("room-camera-tile").hidden = Boolean(this.list) && !room;
    // Until a new connection's `cameras` event, its tiles stay as they were (a frozen
    // picture survives the link being rebuilt); only the event removes a camera.
    if (!this.list) return;
    const others = list.filter((c) => c !== room);
    for (const [name, tile] of this.tiles) {
      if (!others.some((c) => c.name === name)) { tile.root.remove(); this.tiles.delete(name); }
    }
    for (const camera of others) {
      let tile = this.tiles.get(camera.name);
      if (!tile) {
        tile = this._newTile(camera);
        this.tiles.set(camera.name, tile);
        $("camera-tiles").append(tile.root);
      }
      tile.camera = camera;
      this._show(tile.video, this.streams.get(camera.mid));
      this._labelTile(tile);
    }
  }

  _show(video, stream) {
    if (video.srcObject !== (stream ?? null)) video.srcObject = stream ?? null;
  }

  _label(camera) {
    if (camera.purpose === "room") {
      return camera.name === "room" ? t("camera.room") : t("camera.roomNamed", { name: camera.name });
    }
    return t("camera.diagnostic", { name: camera.name });
  }

  _newTile(camera) {
    const root = document.createElement("figure");
    root.className = `camera-tile ${camera.purpose}`;
    root.dataset.camera = camera.name;
    root.dataset.purpose = camera.purpose;
    const label = document.createElement("figcaption");
    label.className = "camera-label";
    const frame = document.createElement("div");
    frame.className = "camera-frame";
    const video = document.createElement("video");
    video.autoplay = true;
    video.muted = true;
    video.playsInline = true;
    const canvas = document.createElement("canvas");
    canvas.hidden = true;
    frame.append(video, canvas);
    root.append(label, frame);
    const tile = { root, label, video, canvas, camera };
    if (camera.purpose === "diagnostic") {
      const tools = document.createElement("div");
      tools.className = "camera-tools";
      const button = (cls, handler) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = cls;
        b.addEventListener("click", handler);
        tools.append(b);
        return b;
      };
      tile.freeze = button("freeze", () => this._freeze(tile));
      tile.keep = button("keep", () => this._keep(tile));
      tile.live = button("live", () => this._live(tile));
      tile.outcome = document.createElement("span");
      tile.outcome.className = "camera-outcome";
      tile.outcome.setAttribute("role", "status");
      tile.when = document.createElement("span");
      tile.when.className = "camera-kept-when";
      tools.append(tile.outcome, tile.when);
      root.append(tools);
      this._live(tile);
    }
    return tile;
  }

  _labelTile(tile) {
    tile.label.textContent = this._label(tile.camera);
    const frozen = tile.root.classList.contains("frozen");
    tile.video.setAttribute("aria-label", t("camera.videoOf", { label: tile.label.textContent }));
    tile.canvas.setAttribute("aria-label", t("camera.frozenOf", { label: tile.label.textContent }));
    tile.canvas.setAttribute("role", "img");
    if (!tile.freeze) return;
    tile.freeze.textContent = t("camera.freeze");
    tile.keep.textContent = t("camera.keep");
    tile.live.textContent = t("camera.live");
    tile.root.dataset.state = frozen ? "frozen" : "live";
    if (tile.outcomeKey) tile.outcome.textContent = t(tile.outcomeKey, tile.outcomeValues);
    tile.when.textContent = tile.keptAt && tile.keptOther ? t("camera.keptFrame", {
      time: formatTime(tile.keptAt), frozen: formatTime(tile.frozenAt),
    }) : "";
  }

  /** Hold the tile on the frame its video shows now. */
  _freeze(tile) {
    const { video, canvas } = tile;
    if (!video.videoWidth) return; // nothing decoded yet
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0);
    const [width, height] = STAMP_SIZE;
    const stamp = readStamp(context.getImageData(0, 0, Math.min(width, canvas.width), Math.min(height, canvas.height)));
    tile.frozenFrameId = stamp?.frameId ?? null;
    canvas.dataset.frameId = tile.frozenFrameId ?? "";
    if (tile.frozenFrameId !== null) {
      this.send({ type: "hold-frame", camera: tile.camera.name, frame_id: tile.frozenFrameId });
    }
    tile.frozenAt = Date.now();
    tile.keptAt = null;
    canvas.hidden = false;
    video.hidden = true;
    tile.root.classList.add("frozen");
    tile.freeze.hidden = true;
    tile.keep.hidden = false;
    tile.keep.disabled = false;
    tile.live.hidden = false;
    this._outcome(tile, "camera.frozen", {}, "frozen");
    this._labelTile(tile);
  }

  _live(tile) {
    tile.canvas.hidden = true;
    tile.video.hidden = false;
    tile.root.classList.remove("frozen");
    tile.freeze.hidden = false;
    tile.keep.hidden = true;
    tile.live.hidden = true;
    this._labelTile(tile);
  }

  _keep(tile) {
    this.requests += 1;
    const request = `keep-${Date.now()}-${this.requests}`;
    const keep = { type: "keep-frame", request, camera: tile.camera.name };
    if (tile.frozenFrameId !== null && tile.frozenFrameId !== undefined) keep.frame_id = tile.frozenFrameId;
    if (!this.send(keep)) {
      this._outcome(tile, "camera.noLink", {}, "refused");
      return;
    }
    tile.keep.disabled = true;
    this._outcome(tile, "camera.keeping", {}, "keeping");
    const timer = setTimeout(() => {
      this.pending.delete(request);
      tile.keep.disabled = false;
      this._outcome(tile, "camera.noAnswer", {}, "failed");
    }, KEEP_ANSWER_MS);
    this.pending.set(request, { tile, timer });
  }

  /** The bedside's `kept-frame`: the outcome of one of our keeps, shown on its tile. */
  kept(message) {
    const pending = this.pending.get(message.request);
    if (!pending) return; // another tab's, or one already given up
    this.pending.delete(message.request);
    clearTimeout(pending.timer);
    const { tile } = pending;
    tile.keep.disabled = message.outcome === "kept"; // kept once: Live, then freeze again
    if (message.outcome === "kept") {
      const key = message.deidentified === false ? "camera.kept.identified" : "camera.kept.deidentified";
      this._outcome(tile, key, {}, "kept");
      tile.root.dataset.sopInstanceUid = message.sop_instance_uid ?? "";
      tile.keptAt = message.captured ? message.captured * 1000 : null;
      // Kept the frozen frame itself: the times need no comparing.
      tile.keptOther = message.frame_id !== tile.frozenFrameId;
      tile.root.dataset.keptFrameId = message.frame_id ?? "";
      this._labelTile(tile);
    } else {
      const key = message.outcome === "refused" ? "camera.refused" : "camera.failed";
      this._outcome(tile, key, { reason: message.reason ?? "" }, message.outcome);
    }
  }

  _outcome(tile, key, values, state) {
    tile.outcomeKey = key;
    tile.outcomeValues = values;
    tile.outcome.dataset.outcome = state;
    tile.outcome.textContent = t(key, values);
  }

  relabel() {
    this._render();
  }

  close() {
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }
}
