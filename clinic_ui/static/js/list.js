// The consultation list and the request form. What a user may do with each consultation
// is the server's to say (`allowed_actions`); the list never re-derives the rules.
import { ApiError } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { ConsultationAction } from "./protocol.js";
import { siteName } from "./format.js";

const $ = (id) => document.getElementById(id);

export function errorText(err) {
  if (err instanceof ApiError) return t("error.server", { detail: err.detail });
  return t("error.network");
}

/** Buttons by action, in the order they are shown: [action, label key]. Closing a request
 *  nobody accepted cancels it, so `close` is offered only once a consultation is active. */
const BUTTONS = [
  [ConsultationAction.ACCEPT, "consultations.accept", (row) => row.state === "requested"],
  [ConsultationAction.CANCEL, "consultations.cancel", (row) => row.state === "requested"],
  [ConsultationAction.JOIN, "consultations.join", () => true],
];

/** Show the list view and fill it. `open(row)` opens a consultation's room. */
export async function showList(state, open) {
  const p = state.api.principal;
  $("list-error").textContent = "";
  $("request-form").hidden = !(p.role === "doctor" || p.role === "technician");
  const select = $("consulting-site");
  select.replaceChildren(...state.sites.filter((s) => s.code !== p.site).map((s) => {
    const option = document.createElement("option");
    option.value = s.code;
    option.textContent = siteName(state.sites, s.code);
    return option;
  }));
  try {
    renderList(state, await state.api.get("/api/consultations"), open);
  } catch (err) {
    $("list-error").textContent = errorText(err);
  }
}

function renderList(state, rows, open) {
  const body = $("consultations").tBodies[0];
  body.replaceChildren();
  $("consultations-empty").hidden = rows.length > 0;
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.id = row.id;
    tr.insertCell().textContent = t("consultations.from", {
      from: siteName(state.sites, row.requesting_site), to: siteName(state.sites, row.consulting_site),
    });
    const stateCell = tr.insertCell();
    stateCell.className = "state";
    stateCell.textContent = t(`state.${row.state}`);
    const consent = tr.insertCell();
    consent.className = "consent";
    consent.textContent = t(row.consent_cross_border ? "consultations.consentYes" : "consultations.consentNo");
    tr.insertCell().textContent = row.reason || "";
    tr.insertCell().textContent = new Date(row.created_at).toLocaleString(i18n.language);
    const actions = tr.insertCell();
    for (const [action, key, shown] of BUTTONS) {
      if (!row.allowed_actions.includes(action) || !shown(row)) continue;
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t(key);
      b.dataset.action = key;
      b.onclick = () => act(state, row, action, open)
        .catch((err) => { $("list-error").textContent = errorText(err); });
      actions.append(b);
    }
  }
}

async function act(state, row, action, open) {
  if (action === ConsultationAction.JOIN) return open(row);
  await state.api.post(`/api/consultations/${row.id}/${action}`);
  await showList(state, open);
}

/** The request form's submit handler. */
export async function requestConsultation(state, open) {
  try {
    await state.api.post("/api/consultations", {
      consulting_site: $("consulting-site").value,
      consent_cross_border: $("consent").checked,
      reason: $("reason").value,
    });
    $("reason").value = "";
    await showList(state, open);
  } catch (err) {
    $("list-error").textContent = errorText(err);
  }
}
