// The image panel's "From the PACS" section (issue 13): a clinician of the bedside's site
// searches that site's PACS (`pacs-find` on the bedside link's events channel: the gateway
// is what reaches the PACS) and pulls a study into the consultation (`pacs-pull`); the
// answers (`pacs-studies`, `pacs-pulled`) come back to this connection only. The pulled
// instances then arrive in the panel as every stored image does (`imaging.stored`). The
// other site's clinicians are told the bedside can pull; the search is not theirs (its
// answer names patients, which stay on their site).
import { t } from "./i18n.js";
import { personName } from "./imaging_math.js";

const $ = (id) => document.getElementById(id);
/** An answer not come by then is given up (the bedside answers within its PACS timeout). */
const ANSWER_MS = 120000;
/** What the bedside can ask its PACS (media/rtc/events.py, telemed/gateway/pacs_room.py):
 *  at most `max` characters (64 for a patient ID, 16 for an accession number, a DICOM SH),
 *  printable ASCII without a backslash (DICOM's value separator). */
export function queryText(text, max = 64) {
  return text.length <= max && [...text].every((c) => c >= " " && c <= "~" && c !== "\\");
}

/** Clear the section: nothing of a previous room may show. */
export function resetPacsView() {
  $("pacs").hidden = true;
  $("pacs-elsewhere").hidden = true;
  $("pacs-state").textContent = "";
  $("pacs-results").replaceChildren();
}

/** A DICOM person name as the PACS gives it ("Kim^Minji=김^민지"): the patient's own script
 *  first, as the panel shows stored names (imaging_math.personName). */
export function pacsName(text) {
  const [alphabetic = "", ideographic = "", phonetic = ""] = String(text ?? "").split("=");
  return personName({ "00100010": { vr: "PN", Value: [{ Alphabetic: alphabetic, Ideographic: ideographic, Phonetic: phonetic }] } });
}

/** "2026-12-01" (a date input's value) as a DICOM date, "20261201"; "" for none. */
export function dicomDate(value) {
  return /^\d{4}-\d{2}-\d{2}$/.test(value ?? "") ? value.replaceAll("-", "") : "";
}

function shownDate(da) {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : "";
}

export class PacsPanel {
  /** `link`: the room's BedsideLink (sendEvent, and its "event" and "state" events). */
  constructor({ link, principal, row }) {
    this.link = link;
    this.principal = principal;
    this.row = row;
    this.studies = []; // the last answer's studies
    this.truncated = false;
    this.outcomes = new Map(); // study uid -> { state: "pulling"|"pulled"|"refused"|"failed", ... }
    this.pending = new Map(); // request id -> { kind, uid, timer }
    this.counter = 0;
    this.state = null; // [key, values] of the search's state line
    this.controller = new AbortController();
    const signal = this.controller.signal;
    link?.addEventListener("event", (e) => this._answer(e.detail), { signal });
    $("pacs-form").addEventListener("submit", (e) => { e.preventDefault(); this.search(); }, { signal });
    this.render();
  }

  /** Clinicians of the bedside's (requesting) site search and pull. */
  get maySearch() {
    const me = this.principal;
    return Boolean(me && (me.role === "doctor" || me.role === "technician")
      && me.site === this.row.requesting_site);
  }

  get isActive() {
    return this.row.state === "active" && !this.isEnded;
  }

  close() {
    this.controller.abort();
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    resetPacsView();
  }

  update(row) {
    this.row = row;
    this.render();
  }

  ended() {
    this.isEnded = true;
    this.render();
  }

  relabel() {
    this.render();
  }

  // -- requests ------------------------------------------------------------------------------

  search() {
    const patientId = $("pacs-patient-id").value.trim();
    const accession = $("pacs-accession").value.trim();
    if (!queryText(patientId) || !queryText(accession, 16)) {
      this._setState("pacs.badQuery");
      return;
    }
    const message = {
      type: "pacs-find", request: this._id("find"),
      patient_id: patientId, accession_number: accession, study_date: dicomDate($("pacs-date").value),
    };
    // A new search: answers to an older one are not wanted any more.
    for (const [id, p] of this.pending) if (p.kind === "find") { clearTimeout(p.timer); this.pending.delete(id); }
    if (!this._send(message, { kind: "find" })) return;
    this._setState("pacs.searching");
  }

  pull(uid) {
    if (!this.isActive) return;
    const message = { type: "pacs-pull", request: this._id("pull"), study_instance_uid: uid };
    if (!this._send(message, { kind: "pull", uid })) return;
    this.outcomes.set(uid, { state: "pulling" });
    this.renderResults();
  }

  _id(kind) {
    this.counter += 1;
    return `${kind}-${Date.now().toString(36)}-${this.counter}`;
  }

  _send(message, entry) {
    if (!this.link?.sendEvent(message)) {
      this._setState("pacs.notOpen");
      return false;
    }
    const timer = setTimeout(() => this._noAnswer(message.request), ANSWER_MS);
    this.pending.set(message.request, { ...entry, timer });
    return true;
  }

  _noAnswer(id) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.kind === "find") this._setState("pacs.noAnswer");
    else {
      this.outcomes.set(p.uid, { state: "failed", reason: t("pacs.noAnswer") });
      this.renderResults();
    }
  }

  // -- answers -------------------------------------------------------------------------------

  /** A message of the bedside's events channel: ours when it answers a pending request. */
  _answer(message) {
    if (message.type !== "pacs-studies" && message.type !== "pacs-pulled") return;
    const p = this.pending.get(message.request);
    if (!p) return; // an answer to another tab, or one given up
    clearTimeout(p.timer);
    this.pending.delete(message.request);
    if (message.type === "pacs-studies") {
      if (message.error) {
        this.studies = [];
        this._setState("pacs.error", { reason: message.error });
      } else {
        this.studies = message.studies;
        this.truncated = message.truncated;
        this._renderFound();
      }
      this.renderResults();
    } else {
      const outcome = { state: message.outcome, completed: message.completed, failed: message.failed, reason: message.reason ?? "" };
      this.outcomes.set(message.study_instance_uid, outcome);
      this.renderResults();
    }
  }

  _renderFound() {
    const count = this.studies.length;
    if (!count) this._setState("pacs.none");
    else if (this.truncated) this._setState("pacs.truncated", { count });
    else if (count === 1) this._setState("pacs.foundOne");
    else this._setState("pacs.found", { count });
  }

  _setState(key, values = {}) {
    this.state = [key, values];
    $("pacs-state").textContent = t(key, values);
  }

  // -- view ----------------------------------------------------------------------------------

  render() {
    const mine = this.maySearch;
    $("pacs").hidden = !mine;
    $("pacs-elsewhere").hidden = mine || !this.principal || this.row.state !== "active";
    $("pacs-search").disabled = !this.isActive;
    if (this.state) $("pacs-state").textContent = t(...this.state);
    this.renderResults();
  }

  renderResults() {
    const items = this.studies.map((study) => this._item(study));
    $("pacs-results").replaceChildren(...items);
  }

  _item(study) {
    const li = document.createElement("li");
    li.dataset.study = study.study_instance_uid;
    const who = document.createElement("span");
    who.className = "who";
    const name = pacsName(study.patient_name);
    who.textContent = [name || t("pacs.noName"), study.patient_id].filter(Boolean).join(" · ");
    const what = document.createElement("span");
    what.className = "what";
    const count = study.instances === null || study.instances === undefined ? "" : t("pacs.instances", { count: study.instances });
    what.textContent = [shownDate(study.study_date), study.description, study.modalities.join(", "), count]
      .filter(Boolean).join(" · ");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "pull";
    button.textContent = t("pacs.pull");
    const outcome = this.outcomes.get(study.study_instance_uid);
    button.disabled = !this.isActive || outcome?.state === "pulling";
    button.addEventListener("click", () => this.pull(study.study_instance_uid));
    const said = document.createElement("span");
    said.className = "outcome";
    said.setAttribute("role", "status");
    if (outcome) {
      said.dataset.outcome = outcome.state;
      said.textContent = outcomeText(outcome);
    }
    li.append(who, what, button, said);
    return li;
  }
}

function outcomeText(outcome) {
  switch (outcome.state) {
    case "pulling": return t("pacs.pulling");
    case "pulled": return outcome.failed
      ? t("pacs.pulledFailed", { count: outcome.completed, failed: outcome.failed })
      : t("pacs.pulled", { count: outcome.completed });
    case "refused": return t("pacs.refused", { reason: outcome.reason });
    default: return t("pacs.failed", { reason: outcome.reason });
  }
}
