// The consultation list and the request form. The server pushes every change to the
// consultations of our site over the session's socket (`consultation` messages), so the list
// is live; what a user may do with each consultation is the server's to say
// (`allowed_actions`): the list never re-derives the rules.
import { ApiError } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { siteName } from "./format.js";
import { notify } from "./notice.js";
import { ConsultationAction } from "./protocol.js";

const $ = (id) => document.getElementById(id);

/** The patient the request form names, or null when no pseudonym was given. */
function patientFromForm() {
  const pseudonym = $("patient-pseudonym").value.trim();
  if (!pseudonym) return null;
  const year = $("patient-birth-year").value;
  return {
    pseudonym,
    birth_year: year ? Number(year) : null,
    sex: $("patient-sex").value,
    ward: $("patient-ward").value.trim(),
    bed: $("patient-bed").value.trim(),
    reason: $("reason").value.trim(),
    allergies: $("patient-allergies").value.split(/[,、，]/).map((a) => a.trim()).filter(Boolean),
    name: $("patient-name").value.trim(),
    name_romanised: $("patient-name-romanised").value.trim(),
  };
}

export function errorText(err) {
  if (err instanceof ApiError) return t("error.server", { detail: err.detail });
  return t("error.network");
}

/** Buttons by action, in the order they are shown: [action, label key, shown for row]. */
const BUTTONS = [
  [ConsultationAction.ACCEPT, "consultations.accept", (row) => row.state === "requested"],
  [ConsultationAction.CANCEL, "consultations.cancel", (row) => row.state === "requested"],
  [ConsultationAction.JOIN, "consultations.join", () => true],
];

export class ListView {
  /** `open(row)` opens a consultation's room. */
  constructor(state, open) {
    this.state = state;
    this.open = open;
    this.rows = new Map(); // id -> the consultation as the server last told it
    this.visible = false;
  }

  /** Show the view and load the list. */
  async show() {
    this.visible = true;
    const p = this.state.api.principal;
    $("list-error").textContent = "";
    $("request-form").hidden = !(p.role === "doctor" || p.role === "technician");
    this.renderSites();
    try {
      // Changes pushed while the list is fetched are newer than what the fetch returns.
      this._pushed = new Map();
      const rows = await this.state.api.get("/api/consultations");
      this.rows = new Map([...rows.map((r) => [r.id, r]), ...this._pushed]);
      this._pushed = null;
      this.render();
    } catch (err) {
      $("list-error").textContent = errorText(err);
    }
  }

  hide() {
    this.visible = false;
  }

  /** A `consultation` message from the server: one consultation changed or is new. */
  update(row) {
    const known = this.rows.get(row.id);
    this.rows.set(row.id, row);
    this._pushed?.set(row.id, row);
    if (!known && row.state === "requested" && row.allowed_actions.includes(ConsultationAction.ACCEPT)) {
      notify(t("notice.newRequest", { from: siteName(this.state.sites, row.requesting_site), reason: row.reason || "" }),
        { kind: "request", chime: true, ms: 15000 });
    }
    if (this.visible) this.render();
  }

  renderSites() {
    const p = this.state.api.principal;
    const select = $("consulting-site");
    const chosen = select.value;
    select.replaceChildren(...this.state.sites.filter((s) => s.code !== p.site).map((s) => {
      const option = document.createElement("option");
      option.value = s.code;
      option.textContent = siteName(this.state.sites, s.code);
      return option;
    }));
    if (chosen) select.value = chosen;
  }

  render() {
    const rows = [...this.rows.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    const body = $("consultations").tBodies[0];
    body.replaceChildren();
    $("consultations-empty").hidden = rows.length > 0;
    $("consultations").hidden = rows.length === 0;
    for (const row of rows) {
      const tr = body.insertRow();
      tr.dataset.id = row.id;
      tr.dataset.state = row.state;
      tr.insertCell().textContent = t("consultations.from", {
        from: siteName(this.state.sites, row.requesting_site),
        to: siteName(this.state.sites, row.consulting_site),
      });
      const stateCell = tr.insertCell();
      stateCell.className = "state";
      stateCell.textContent = t(`state.${row.state}`);
      const consent = tr.insertCell();
      consent.className = "consent";
      consent.textContent = t(row.consent_cross_border ? "consultations.consentYes" : "consultations.consentNo");
      tr.insertCell().textContent = row.reason || "";
      tr.insertCell().textContent = new Date(row.created_at).toLocaleString(i18n.language, { timeZoneName: "short" });
      const actions = tr.insertCell();
      actions.className = "actions";
      for (const [action, key, shown] of BUTTONS) {
        if (!row.allowed_actions.includes(action) || !shown(row)) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = t(key);
        b.dataset.action = key;
        b.onclick = () => this._act(row, action)
          .catch((err) => { $("list-error").textContent = errorText(err); });
        actions.append(b);
      }
    }
  }

  async _act(row, action) {
    if (action === ConsultationAction.JOIN) return this.open(row);
    this.update(await this.state.api.post(`/api/consultations/${row.id}/${action}`));
  }

  /** The request form's submit handler. */
  async request() {
    try {
      const row = await this.state.api.post("/api/consultations", {
        consulting_site: $("consulting-site").value,
        consent_cross_border: $("consent").checked,
        reason: $("reason").value,
        patient: patientFromForm(),
      });
      $("request-form").reset();
      this.update(row);
    } catch (err) {
      $("list-error").textContent = errorText(err);
    }
  }
}
