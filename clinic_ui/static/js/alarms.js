// The bedside's alarms as a clinician at either site sees and hears them: the events
// channel's `alarm` and `limits` messages (media/rtc/events.py; the gateway owns every
// alarm's state), shown in IEC 60601-1-8 colours (red high, yellow medium, cyan low;
// technical alarms marked and dashed), sounded with the standard's burst patterns, and
// acknowledged by a doctor (an `alarm-ack` through the server, which audits it and relays it
// to the gateway). The tone can be paused for two minutes, never switched off; an alarm that
// starts meanwhile ends the pause. The limits in force are shown, and the consulting site's
// doctor changes them (`alarm-limits`). Screen readers are told each new alarm at once
// (an assertive live region, one sentence) and each change (ended, acknowledged) politely;
// the list itself is read like any list.
import { t } from "./i18n.js";
import { displayUnit, formatValue, formatTime } from "./format.js";

/** How long a viewer may pause the tone (IEC 60601-1-8 AUDIO PAUSED: at most 2 min here). */
export const PAUSE_MS = 120000;
/** An ended alarm nobody acknowledged stays this long after its end. */
export const ENDED_VISIBLE_MS = 120000;
/** An ended, acknowledged alarm stays this long after the later of the two. */
export const DONE_VISIBLE_MS = 30000;

const RANK = { high: 2, medium: 1, low: 0 };

/** IEC 60601-1-8 auditory alarm signals: the pulse onsets of one burst (s), the pulse
 *  length (s), how often the burst repeats (s) and the fundamental (Hz; sounded with
 *  harmonics). High: 10 pulses as 3+2, a pause, 3+2; medium: 3 pulses; low: 2. */
export const PATTERNS = {
  high: { pulses: [0, 0.25, 0.5, 1.0, 1.25, 1.95, 2.2, 2.45, 2.95, 3.2], length: 0.15, every: 8, frequency: 880 },
  medium: { pulses: [0, 0.4, 0.8], length: 0.2, every: 12, frequency: 660 },
  low: { pulses: [0, 0.4], length: 0.2, every: 25, frequency: 523 },
};

/** Whether `alarm` asks to be heard: active and not acknowledged. */
export function sounds(alarm) {
  return alarm.state === "active" && !alarm.acknowledged_by;
}

/** The highest priority among `alarms` that sound, or null. */
export function soundingPriority(alarms) {
  let best = null;
  for (const a of alarms) {
    if (sounds(a) && (best === null || RANK[a.priority] > RANK[best])) best = a.priority;
  }
  return best;
}

/** Whether `alarm` is still shown at `nowMs`: active ones always; an ended one until it is
 *  acknowledged (for a while after) or for a while after its end. */
export function isVisible(alarm, nowMs) {
  if (alarm.state === "active") return true;
  const endedMs = (alarm.ended ?? 0) * 1000;
  if (alarm.acknowledged_by) {
    return nowMs - Math.max(endedMs, (alarm.acknowledged_at ?? 0) * 1000) < DONE_VISIBLE_MS;
  }
  return nowMs - endedMs < ENDED_VISIBLE_MS;
}

/** Active first, then by priority, then the newest first. */
export function sortAlarms(alarms) {
  return [...alarms].sort((a, b) =>
    (a.state === "active" ? 0 : 1) - (b.state === "active" ? 0 : 1)
    || RANK[b.priority] - RANK[a.priority]
    || b.started - a.started);
}

/** When the tone sounds: pure, driven by the caller's clock (ms). */
export class ToneState {
  constructor() {
    this.pausedUntil = 0;
    this.pausedIds = new Set();
    this.current = null;
    this.next = 0;
    this.bursts = 0;
  }

  paused(now) {
    return now < this.pausedUntil;
  }

  /** Pause for PAUSE_MS the alarms sounding now. Pausing again does not lengthen it. */
  pause(alarms, now) {
    if (this.paused(now)) return;
    this.pausedUntil = now + PAUSE_MS;
    this.pausedIds = new Set(alarms.filter(sounds).map((a) => a.id));
  }

  resume() {
    this.pausedUntil = 0;
    this.pausedIds.clear();
  }

  /** The priority whose burst to play at `now`, or null. Call it every few hundred ms. */
  due(alarms, now) {
    const sounding = alarms.filter(sounds);
    // An alarm that started during the pause was never paused: the pause ends.
    if (this.paused(now) && sounding.some((a) => !this.pausedIds.has(a.id))) this.resume();
    const priority = soundingPriority(sounding);
    if (priority === null || this.paused(now)) {
      this.current = null;
      return null;
    }
    if (priority !== this.current || now >= this.next) {
      this.current = priority;
      this.next = now + PATTERNS[priority].every * 1000;
      this.bursts++;
      return priority;
    }
    return null;
  }

  /** "silent" (nothing to sound), "paused", or the priority sounding. */
  state(alarms, now) {
    if (this.paused(now)) return "paused";
    return soundingPriority(alarms) ?? "silent";
  }
}

/** One burst through WebAudio: each pulse a fundamental with four harmonics, shaped so it
 *  neither clicks nor blares. Browsers play sound only after the user has interacted with
 *  the page (signing in is that); before, nothing plays and the list still shows. */
class Tone {
  constructor() {
    this.context = null;
    this.wave = null;
  }

  play(priority) {
    try {
      this.context ??= new AudioContext();
      const audio = this.context;
      if (audio.state === "suspended") audio.resume();
      this.wave ??= audio.createPeriodicWave(
        new Float32Array([0, 0, 0, 0, 0, 0]), new Float32Array([0, 1, 0.5, 0.35, 0.25, 0.2]));
      const pattern = PATTERNS[priority];
      const start = audio.currentTime + 0.02;
      for (const onset of pattern.pulses) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.setPeriodicWave(this.wave);
        osc.frequency.value = pattern.frequency;
        const at = start + onset;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
        gain.gain.setValueAtTime(0.25, at + pattern.length - 0.03);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + pattern.length);
        osc.connect(gain).connect(audio.destination);
        osc.start(at);
        osc.stop(at + pattern.length + 0.01);
      }
      return true;
    } catch {
      return false; // no audio output here: the list still shows
    }
  }

  close() {
    this.context?.close().catch(() => {});
    this.context = null;
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/** What an alarm is, in words: "SpO₂ low", "Probe off", or the device's own words. */
export function alarmWhat(alarm) {
  const vital = alarm.code ? t(`vital.${alarm.code}`) : "";
  if (alarm.code && alarm.condition === `${alarm.code}_low`) return t("alarm.low", { vital });
  if (alarm.code && alarm.condition === `${alarm.code}_high`) return t("alarm.high", { vital });
  const key = `alarm.condition.${alarm.condition}`;
  const named = t(key);
  if (alarm.condition === "device" && alarm.text) return alarm.text;
  return named === key ? alarm.condition : named;
}

const LIMIT_ORDER = ["heart_rate", "pulse_rate", "spo2", "spo2_desat", "resp_rate", "nibp_sys",
  "nibp_dia", "nibp_mean", "temperature"];

/** The alarm bar at the top of the room. `signaling`: the tab's socket (acknowledgements and
 *  limit changes go through the server); `canAcknowledge`: a doctor; `canEditLimits`: a
 *  doctor of the consulting site. */
export class AlarmView {
  constructor(signaling, { canAcknowledge = false, canEditLimits = false, now = () => Date.now() } = {}) {
    this.signaling = signaling;
    this.canAcknowledge = canAcknowledge;
    this.canEditLimits = canEditLimits;
    this.now = now;
    this.alarms = new Map(); // id -> the latest message, with receivedAt
    this.limits = null;
    this.frozen = false;
    this.toneState = new ToneState();
    this.tone = new Tone();
    this._build();
    this.render();
    this._ticker = setInterval(() => this._tick(), 250);
  }

  _build() {
    let section = document.getElementById("alarms");
    if (!section) {
      section = el("section", { id: "alarms", className: "alarms card", "aria-labelledby": "alarms-title" });
      const view = document.getElementById("room-view");
      const bar = view.querySelector(".room-bar");
      if (bar) bar.after(section); else view.prepend(section);
    }
    this.section = section;
    this.title = el("h3", { id: "alarms-title" });
    this.toneText = el("span", { className: "tone-state" });
    this.pauseButton = el("button", { type: "button", id: "alarm-pause", className: "pause" });
    this.pauseButton.setAttribute("aria-pressed", "false");
    this.pauseButton.addEventListener("click", () => this.togglePause());
    this.limitsButton = el("button", { type: "button", id: "alarm-limits-toggle" });
    this.limitsButton.setAttribute("aria-expanded", "false");
    this.limitsButton.setAttribute("aria-controls", "alarm-limits");
    this.limitsButton.addEventListener("click", () => this._toggleLimits());
    // One line while all is well: the room must still fit one screen.
    this.none = el("span", { className: "alarms-none" });
    const head = el("div", { className: "alarms-head" }, this.title, this.none, this.toneText,
      this.pauseButton, this.limitsButton);
    this.list = el("ul", { id: "alarm-list", className: "alarm-list" });
    // One sentence per new alarm, read out at once; one per change, politely. (A live list
    // would be read again whole each time an item's state is redrawn.)
    this.alert = el("p", { className: "visually-hidden alarm-alert" });
    this.alert.setAttribute("aria-live", "assertive");
    this.news = el("p", { className: "visually-hidden alarm-news", role: "status" });
    this.limitsBox = el("div", { id: "alarm-limits", className: "alarm-limits", hidden: true });
    section.replaceChildren(head, this.list, this.alert, this.news, this.limitsBox);
    section.dataset.tone = "silent";
    section.dataset.bursts = "0";
  }

  /** An `alarm` or `limits` message (events.js has checked it against the schema). */
  event(message) {
    if (message.type === "limits") {
      this.limits = message;
      this._renderLimits();
      return;
    }
    if (message.type !== "alarm") return;
    const before = this.alarms.get(message.id);
    this.alarms.set(message.id, { ...message, receivedAt: before?.receivedAt ?? this.now() });
    this._announce(before, message);
    this.render();
    this._tick();
  }

  _announce(before, alarm) {
    const what = alarmWhat(alarm);
    let text = "";
    if (!before && alarm.state === "active") {
      this.alert.textContent = t("alarm.announce.started", {
        priority: t(`alarm.priority.${alarm.priority}`), what, device: alarm.device,
      });
      return;
    }
    if (before && !before.acknowledged_by && alarm.acknowledged_by) {
      text = t("alarm.announce.acknowledged", { what, name: alarm.acknowledged_by });
    } else if (before?.state === "active" && alarm.state === "ended") {
      text = t("alarm.announce.ended", { what });
    }
    if (text) this.news.textContent = text;
  }

  /** A new connection to the bedside: what it tells next (its limits, then every alarm
   *  still worth showing) replaces what this view knew, which may have changed unseen. */
  restart() {
    this.alarms.clear();
    this.render();
    this._tick();
  }

  /** The alarms shown now, in order. */
  shown() {
    const now = this.now();
    return sortAlarms([...this.alarms.values()].filter((a) => isVisible(a, now)));
  }

  acknowledge(id) {
    if (!this.canAcknowledge) return false;
    return this.signaling.send({ type: "alarm-ack", alarm_id: id });
  }

  togglePause() {
    const now = this.now();
    if (this.toneState.paused(now)) this.toneState.resume();
    else this.toneState.pause([...this.alarms.values()], now);
    this._tick();
  }

  /** The consultation ended: the list stays as it was, the tone stops. */
  freeze() {
    this.frozen = true;
    this._tick();
  }

  relabel() {
    this.render();
    this._renderLimits();
    this._tick(); // the tone's state and the pause button, in the new language now
  }

  close() {
    clearInterval(this._ticker);
    this.tone.close();
    this.section.replaceChildren();
  }

  _tick() {
    const now = this.now();
    const alarms = this.frozen ? [] : [...this.alarms.values()];
    const due = this.toneState.due(alarms, now);
    if (due && this.tone.play(due)) this.section.dataset.bursts = String(this.toneState.bursts);
    const state = this.toneState.state(alarms, now);
    this.section.dataset.tone = state;
    const paused = state === "paused";
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    this.pauseButton.textContent = paused ? t("alarm.resume") : t("alarm.pause");
    const left = Math.max(0, Math.ceil((this.toneState.pausedUntil - now) / 1000));
    this.toneText.textContent = paused
      ? t("alarm.tone.paused", { left: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` })
      : t("alarm.tone.on");
    this.section.dataset.pausedFor = paused ? String(left) : "";
    // Ended alarms leave the list as their time runs out.
    const shown = this.shown().map((a) => a.id).join(",");
    if (shown !== this._shownIds) this.render();
  }

  render() {
    this.title.textContent = t("alarm.title");
    this.limitsButton.textContent = t("alarm.limits");
    const shown = this.shown();
    this._shownIds = shown.map((a) => a.id).join(",");
    const items = new Map([...this.list.children].map((li) => [li.dataset.id, li]));
    const ordered = shown.map((alarm) => {
      const li = items.get(alarm.id) ?? el("li", { className: "alarm" });
      this._fill(li, alarm);
      items.delete(alarm.id);
      return li;
    });
    for (const li of items.values()) li.remove();
    // Keep existing items in place where the order allows (a moved node is re-announced).
    ordered.forEach((li, k) => { if (this.list.children[k] !== li) this.list.insertBefore(li, this.list.children[k] ?? null); });
    this.none.hidden = shown.length > 0;
    this.none.textContent = t("alarm.none");
    this.section.dataset.count = String(shown.filter((a) => a.state === "active").length);
  }

  _fill(li, alarm) {
    // Redrawn only when something shown changed (a focused button keeps its focus).
    const signature = JSON.stringify([alarm, this.canAcknowledge, t("alarm.acknowledge")]);
    if (li.alarmSignature === signature) return;
    li.alarmSignature = signature;
    Object.assign(li.dataset, {
      id: alarm.id, priority: alarm.priority, kind: alarm.kind, state: alarm.state,
      source: alarm.source, condition: alarm.condition, device: alarm.device,
      acknowledged: String(Boolean(alarm.acknowledged_by)), receivedAt: String(alarm.receivedAt),
    });
    const what = alarmWhat(alarm);
    const parts = [el("span", { className: "priority" }, t(`alarm.priority.${alarm.priority}`))];
    if (alarm.kind === "technical") parts.push(el("span", { className: "kind" }, t("alarm.kind.technical")));
    parts.push(el("span", { className: "what" }, what));
    if (alarm.value !== null && alarm.value !== undefined) {
      const unit = displayUnit(alarm.unit, alarm.code ?? "");
      parts.push(el("span", { className: "value" }, alarm.limit !== null && alarm.limit !== undefined
        ? t("alarm.value", { value: formatValue(alarm.value), unit, limit: formatValue(alarm.limit) })
        : `${formatValue(alarm.value)} ${unit}`));
    }
    if (alarm.text && alarm.condition !== "device") parts.push(el("span", { className: "words" }, `“${alarm.text}”`));
    const source = alarm.source === "limit" ? t("alarm.source.limit", { device: alarm.device })
      : t("alarm.source.device", { device: alarm.device });
    parts.push(el("span", { className: "source" }, source));
    const when = alarm.state === "ended"
      ? t("alarm.endedAt", { time: formatTime(alarm.ended * 1000) })
      : t("alarm.since", { time: formatTime(alarm.started * 1000) });
    parts.push(el("span", { className: "when" }, when));
    if (alarm.acknowledged_by) {
      parts.push(el("span", { className: "ack-state" }, t("alarm.acknowledgedBy", {
        name: alarm.acknowledged_by, time: formatTime(alarm.acknowledged_at * 1000),
      })));
    } else if (this.canAcknowledge) {
      const button = el("button", { type: "button", className: "ack" }, t("alarm.acknowledge"));
      button.setAttribute("aria-label", t("alarm.acknowledgeLabel", { what }));
      button.addEventListener("click", () => { button.disabled = true; if (!this.acknowledge(alarm.id)) button.disabled = false; });
      parts.push(button);
    }
    li.replaceChildren(...parts);
  }

  // -- limits ----------------------------------------------------------------------------

  _toggleLimits() {
    const open = this.limitsBox.hidden;
    this.limitsBox.hidden = !open;
    this.limitsButton.setAttribute("aria-expanded", String(open));
    if (open) this._renderLimits();
  }

  _renderLimits() {
    if (!this.limits || this.limitsBox.hidden) return;
    const message = this.limits;
    const edit = this.canEditLimits && !this.frozen;
    const head = el("tr", {}, ...["alarm.limits.parameter", "alarm.limits.low", "alarm.limits.high", "alarm.limits.delay"]
      .map((key) => el("th", { scope: "col" }, t(key))));
    const ordered = [...message.limits].sort((a, b) => LIMIT_ORDER.indexOf(a.code) - LIMIT_ORDER.indexOf(b.code));
    const rows = ordered.map((limit) => {
      const name = limit.code === "spo2_desat" ? t("alarm.condition.spo2_desat") : t(`vital.${limit.code}`);
      const unit = displayUnit(limit.unit, limit.code);
      const cell = (field, value) => {
        if (!edit) {
          return el("td", { dataset: { field } }, value === null ? t("alarm.limits.off") : `${formatValue(value)} ${field === "delay_s" ? "s" : unit}`);
        }
        const input = el("input", { type: "number", step: "any", min: "0", name: `${limit.code}.${field}`, value: value ?? "" });
        input.setAttribute("aria-label", `${name}: ${t(`alarm.limits.${field === "delay_s" ? "delay" : field}`)}`);
        return el("td", { dataset: { field } }, input);
      };
      return el("tr", { dataset: { code: limit.code } }, el("th", { scope: "row" }, name),
        cell("low", limit.low), cell("high", limit.high), cell("delay_s", limit.delay_s));
    });
    const table = el("table", {}, el("caption", {}, t("alarm.limits.title")), el("thead", {}, head), el("tbody", {}, ...rows));
    const by = message.changed_by
      ? t("alarm.limits.changedBy", { name: message.changed_by, time: formatTime(message.time * 1000) })
      : t("alarm.limits.defaults");
    const parts = [table, el("p", { className: "note changed-by" }, by)];
    if (edit) {
      const apply = el("button", { type: "submit" }, t("alarm.limits.apply"));
      const form = el("form", { className: "limits-form" }, ...parts, apply);
      form.addEventListener("submit", (event) => { event.preventDefault(); this._sendLimits(form); });
      this.limitsBox.replaceChildren(form);
    } else {
      this.limitsBox.replaceChildren(...parts);
    }
  }

  /** The rows a doctor changed, as one `alarm-limits` message. */
  _sendLimits(form) {
    const changed = [];
    for (const limit of this.limits.limits) {
      const read = (field) => {
        const text = form.elements[`${limit.code}.${field}`]?.value.trim() ?? "";
        return text === "" ? null : Number(text);
      };
      const next = { code: limit.code, low: read("low"), high: read("high"), delay_s: read("delay_s") ?? limit.delay_s };
      if (next.low !== limit.low || next.high !== limit.high || next.delay_s !== limit.delay_s) changed.push(next);
    }
    if (changed.length) this.signaling.send({ type: "alarm-limits", limits: changed });
  }
}
