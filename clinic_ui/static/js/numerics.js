// The vital-sign tiles and the device states as the doctor sees them. Told the events
// that concern them (`numeric`, `status`); a value is shown in its unit, from its device,
// greyed when stale, and marked when the gateway derived it from a waveform.
import { t } from "./i18n.js";
import { displayUnit, formatValue } from "./format.js";

const $ = (id) => document.getElementById(id);

/** The order vital signs are shown in; others follow as they come. */
const NUMERIC_ORDER = ["heart_rate", "spo2", "pulse_rate", "nibp_sys", "nibp_dia", "nibp_mean",
  "resp_rate", "temperature", "perfusion_index"];
/** A value older than this is greyed out; a derived value yields to a device's own. */
const STALE_MS = 10000;

export class NumericsView {
  constructor() {
    this.numerics = new Map();
    this.devices = new Map();
    this.frozen = false;
    for (const id of ["numerics", "devices"]) $(id).replaceChildren();
    $("no-devices").hidden = false;
  }

  /** A `numeric` or `status` message (events.js has checked it against the schema). */
  event(message) {
    if (message.type === "numeric") {
      this.numerics.set(`${message.code}|${message.derived ? "derived" : "device"}`, {
        ...message, receivedAt: Date.now(),
      });
      this.renderNumerics();
    } else if (message.type === "status") {
      this.devices.set(message.device, message);
      this.renderDevices();
    }
  }

  /** The consultation ended: the tiles keep their last values, marked as such. */
  freeze() {
    this.frozen = true;
    this.renderNumerics();
  }

  relabel() {
    this.renderNumerics();
    this.renderDevices();
  }

  renderNumerics() {
    const now = Date.now();
    const codes = new Set([...this.numerics.values()].map((m) => m.code));
    const ordered = [...NUMERIC_ORDER.filter((c) => codes.has(c)), ...[...codes].filter((c) => !NUMERIC_ORDER.includes(c))];
    const tiles = ordered.map((code) => {
      const own = this.numerics.get(`${code}|device`);
      const derived = this.numerics.get(`${code}|derived`);
      // The device's own value wins while it is fresh; the gateway's estimate fills in.
      const m = own && (this.frozen || now - own.receivedAt < STALE_MS) ? own : (derived ?? own);
      const tile = document.createElement("div");
      tile.className = "numeric";
      tile.id = `num-${code}`;
      if (this.frozen || now - m.receivedAt > STALE_MS) tile.classList.add("stale");
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = t(`vital.${code}`);
      const value = document.createElement("span");
      value.className = "value";
      // A rate derived from a waveform is shown as a whole number, as a monitor shows it.
      value.textContent = m.value === null ? "--" : formatValue(m.derived ? Math.round(m.value) : m.value);
      value.title = m.value === null ? t("vital.noValue") : "";
      const unit = document.createElement("span");
      unit.className = "unit";
      unit.textContent = displayUnit(m.unit);
      const note = document.createElement("div");
      note.className = "note";
      note.textContent = this.frozen ? t("vital.lastValue") : m.derived ? t("vital.derived") : "";
      tile.append(name, value, unit, note);
      return tile;
    });
    $("numerics").replaceChildren(...tiles);
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
