// The vital-sign tiles and the device states as the doctor reads them. Told the events that
// concern them (`numeric`, `status`, `sources`). A value is shown in its unit, named by its
// device, with its measurement time on hover, greyed with its age when stale; a rate the
// gateway derived from a waveform says so in words and is a whole number; NIBP is one tile
// (systolic/diastolic (mean)) with the cuff time. When two devices measure a parameter, both
// show: the primary one (the bedside's choice, which a technician may change) large.
import { t } from "./i18n.js";
import { displayUnit, formatAge, formatTime, formatValue } from "./format.js";

const $ = (id) => document.getElementById(id);

/** Tiles in the order a monitor shows them; each is one parameter or a group of them. */
const TILES = [
  ["heart_rate", ["heart_rate"]],
  ["spo2", ["spo2"]],
  ["pulse_rate", ["pulse_rate"]],
  ["nibp", ["nibp_sys", "nibp_dia", "nibp_mean"]],
  ["resp_rate", ["resp_rate"]],
  ["temperature", ["temperature"]],
  ["perfusion_index", ["perfusion_index"]],
];
const GROUPED = new Set(TILES.flatMap(([, codes]) => codes));
/** A value older than this is greyed out; a derived value yields to a device's own. */
const STALE_MS = 10000;
/** NIBP is measured now and then, not continuously: stale only after this long. */
const NIBP_STALE_MS = 15 * 60 * 1000;

export class NumericsView {
  /** `canChoose`: this user may choose the primary source (technicians);
   *  `choose(code, device)`: tell the bedside. */
  constructor({ canChoose = false, choose = () => {} } = {}) {
    this.numerics = new Map(); // `${device}|${code}|${derived}` -> message + receivedAt
    this.started = null; // the gateway's start (its hello): numerics' seq count from it
    this.shown = new Map(); // `${device}|${code}|${derived}` -> the highest seq shown
    // device -> {max: its highest seq seen, base: the highest before this connection's
    // hello (undefined on the first), fresh: values above base received since}
    this.counts = new Map();
    this.devices = new Map();
    this.primary = {}; // code -> device (from the bedside's `sources`)
    this.frozen = false;
    this.canChoose = canChoose;
    this.choose = choose;
    this.tiles = new Map(); // tile id -> its elements
    for (const id of ["numerics", "devices"]) $(id).replaceChildren();
    $("no-devices").hidden = false;
  }

  /** A new connection's `hello`: a gateway that started again counts its numerics afresh. */
  hello(message) {
    const started = message.started ?? null;
    if (started !== this.started) {
      this.started = started;
      this.shown.clear();
      this.counts.clear();
    }
    for (const c of this.counts.values()) Object.assign(c, { base: c.max, fresh: 0 });
  }

  /** Values of `device` the gateway measured between the last connection and this one that
   *  never reached this page (the link was down: the server's record, Trends, has them). */
  missed(device) {
    const c = this.counts.get(device);
    return c && c.base !== undefined ? Math.max(0, c.max - c.base - c.fresh) : 0;
  }

  /** A `numeric`, `status` or `sources` message (events.js has checked it). */
  event(message) {
    if (message.type === "numeric") {
      const key = `${message.device}|${message.code}|${message.derived}`;
      if (Number.isInteger(message.seq)) {
        // A value already shown (the latest, re-sent to a new connection) is not news.
        if (message.seq <= (this.shown.get(key) ?? -1)) return;
        this.shown.set(key, message.seq);
        const c = this.counts.get(message.device) ?? { max: message.seq, base: undefined, fresh: 0 };
        this.counts.set(message.device, c);
        c.max = Math.max(c.max, message.seq);
        if (c.base !== undefined && message.seq > c.base) c.fresh += 1;
      }
      this.numerics.set(key, { ...message, receivedAt: Date.now() });
      this.renderNumerics();
    } else if (message.type === "status") {
      this.devices.set(message.device, message);
      this.renderDevices();
    } else if (message.type === "sources") {
      this.primary = message.primary;
      this.renderNumerics();
    }
  }

  /** The consultation ended: the tiles keep their last values, marked as such. */
  freeze() {
    this.frozen = true;
    this.renderNumerics();
  }

  relabel() {
    for (const tile of this.tiles.values()) tile.name.textContent = t(`vital.${tile.id}`);
    this.renderNumerics();
    this.renderDevices();
  }

  /** The value of `code` shown for `device`: the device's own while fresh, else the one the
   *  gateway derived from that device's waveform, else the stale own value. */
  _value(device, code, now) {
    const own = this.numerics.get(`${device}|${code}|false`);
    const derived = this.numerics.get(`${device}|${code}|true`);
    const staleAfter = code.startsWith("nibp") ? NIBP_STALE_MS : STALE_MS;
    if (own && (this.frozen || now - own.receivedAt < staleAfter)) return { m: own, stale: false };
    if (derived && now - derived.receivedAt < STALE_MS) return { m: derived, stale: false };
    const last = own ?? derived;
    return last ? { m: last, stale: true } : null;
  }

  renderNumerics() {
    const now = Date.now();
    const byCode = new Map(); // code -> devices that sent it, in arrival order
    for (const m of this.numerics.values()) {
      const devices = byCode.get(m.code) ?? [];
      if (!devices.includes(m.device)) devices.push(m.device);
      byCode.set(m.code, devices);
    }
    const tiles = [...TILES, ...[...byCode.keys()].filter((c) => !GROUPED.has(c)).map((c) => [c, [c]])]
      .filter(([, codes]) => codes.some((c) => byCode.has(c)));
    const list = $("numerics");
    for (const [id, codes] of tiles) {
      const devices = [...new Set(codes.flatMap((c) => byCode.get(c) ?? []))];
      const chosen = this.primary[codes[0]];
      const primary = devices.includes(chosen) ? chosen : devices[0];
      const tile = this.tiles.get(id) ?? this._newTile(id);
      if (tile.root.parentElement !== list) list.append(tile.root);
      this._fill(tile, codes, primary, devices, now);
    }
  }

  _newTile(id) {
    const root = document.createElement("div");
    root.className = "numeric";
    root.id = `num-${id}`;
    const head = document.createElement("div");
    head.className = "head";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = t(`vital.${id}`);
    const device = document.createElement("span");
    device.className = "device";
    head.append(name, device);
    const value = document.createElement("span");
    value.className = "value";
    const unit = document.createElement("span");
    unit.className = "unit";
    const note = document.createElement("div");
    note.className = "note";
    const others = document.createElement("ul");
    others.className = "others";
    const select = document.createElement("select");
    select.className = "source";
    select.hidden = true;
    select.setAttribute("aria-label", t("vital.primarySource", { name: t(`vital.${id}`) }));
    root.append(head, value, unit, note, others, select);
    const tile = { id, root, name, device, value, unit, note, others, select };
    select.addEventListener("change", () => this.choose(tile.codes[0], select.value));
    this.tiles.set(id, tile);
    return tile;
  }

  _fill(tile, codes, primary, devices, now) {
    tile.codes = codes;
    const shown = this._reading(codes, primary, now);
    tile.root.dataset.device = primary;
    tile.device.textContent = devices.length > 1 || primary ? primary : "";
    tile.device.title = tile.device.textContent;
    tile.root.classList.toggle("stale", this.frozen || !shown || shown.stale);
    tile.value.textContent = shown ? shown.text : "--";
    tile.value.title = shown?.title ?? t("vital.noValue");
    tile.unit.textContent = shown ? shown.unit : "";
    tile.note.textContent = !shown ? "" : this.frozen ? t("vital.lastValue") : shown.note;
    // The other devices measuring it, small, each named.
    tile.others.replaceChildren(...devices.filter((d) => d !== primary).map((device) => {
      const li = document.createElement("li");
      const other = this._reading(codes, device, now);
      li.dataset.device = device;
      li.textContent = `${device}: ${other ? `${other.text} ${other.unit}`.trim() : "--"}`;
      if (other) li.title = other.title;
      li.classList.toggle("stale", !other || other.stale);
      return li;
    }));
    const choosable = this.canChoose && devices.length > 1 && !this.frozen;
    tile.select.hidden = !choosable;
    if (choosable) {
      const current = [...tile.select.options].map((o) => o.value).join("|");
      if (current !== devices.join("|")) {
        tile.select.replaceChildren(...devices.map((d) => new Option(d, d)));
      }
      if (document.activeElement !== tile.select) tile.select.value = primary;
    }
  }

  /** What a tile shows for `device`: text, unit, a hover title (device, measurement time)
   *  and a note (derived, stale age, cuff time), or null when it sent nothing. */
  _reading(codes, device, now) {
    if (codes[0] === "nibp_sys") return this._nibp(device, now);
    const found = this._value(device, codes[0], now);
    if (!found) return null;
    const { m, stale } = found;
    const measured = m.device_time ?? m.time;
    // A rate derived from a waveform is shown as a whole number, as a monitor shows it.
    const text = m.value === null ? "--" : formatValue(m.derived ? Math.round(m.value) : m.value);
    const age = formatAge((now - measured * 1000) / 1000);
    const notes = [];
    if (m.derived) notes.push(t("vital.derived"));
    if (stale) notes.push(age);
    return {
      text, unit: displayUnit(m.unit, m.code), stale,
      title: t("vital.measuredBy", { device, time: formatTime(measured * 1000) }),
      note: notes.join(" · "),
    };
  }

  _nibp(device, now) {
    const parts = ["nibp_sys", "nibp_dia", "nibp_mean"].map((c) => this._value(device, c, now));
    if (!parts[0] && !parts[1]) return null;
    const [sys, dia, mean] = parts.map((p) => (p && p.m.value !== null ? formatValue(Math.round(p.m.value)) : "--"));
    const cuff = (parts[0] ?? parts[1]).m;
    const measured = cuff.device_time ?? cuff.time;
    const stale = parts.some((p) => p?.stale);
    return {
      text: `${sys}/${dia}${parts[2] ? ` (${mean})` : ""}`,
      unit: displayUnit(cuff.unit, "nibp_sys"),
      stale,
      title: t("vital.measuredBy", { device, time: formatTime(measured * 1000) }),
      note: t("vital.cuff", { time: formatTime(measured * 1000), age: formatAge((now - measured * 1000) / 1000) }),
    };
  }

  renderDevices() {
    $("no-devices").hidden = this.devices.size > 0;
    $("devices").replaceChildren(...[...this.devices.values()].map((s) => {
      const li = document.createElement("li");
      li.dataset.device = s.device;
      li.dataset.state = s.state;
      li.textContent = `${s.device}: ${t(`device.${s.state}`)}${s.detail ? ` (${s.detail})` : ""}`;
      return li;
    }));
  }
}
