// The room's imaging messages (signaling/schema.py `imaging.stored`, `imaging.view`), checked
// against the schema generated from their one definition (protocol.js IMAGING_SCHEMA), both
// what arrives and what the page sends. Pure: no DOM.
import { IMAGING_SCHEMA } from "./protocol.js";

export class ImagingMessageError extends Error {}

/** The schema of each message type, by its `type`. */
const BY_TYPE = new Map(
  Object.values(IMAGING_SCHEMA.$defs)
    .filter((def) => def.properties?.type?.const)
    .map((def) => [def.properties.type.const, def]),
);

function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** Why `value` does not match `schema` (the subset pydantic generates here), or null. */
function mismatch(value, schema, where) {
  if (schema.anyOf) {
    return schema.anyOf.some((s) => mismatch(value, s, where) === null)
      ? null : `${where}: ${JSON.stringify(value)} matches none of the allowed types`;
  }
  if ("const" in schema && value !== schema.const) return `${where}: must be ${JSON.stringify(schema.const)}`;
  if (schema.type) {
    const actual = jsonType(value);
    const ok = actual === schema.type || (schema.type === "number" && actual === "integer");
    if (!ok) return `${where}: expected ${schema.type}, got ${actual}`;
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return `${where}: not a finite number`;
    if ("minimum" in schema && value < schema.minimum) return `${where}: below ${schema.minimum}`;
    if ("maximum" in schema && value > schema.maximum) return `${where}: above ${schema.maximum}`;
    if ("exclusiveMinimum" in schema && value <= schema.exclusiveMinimum) {
      return `${where}: must exceed ${schema.exclusiveMinimum}`;
    }
  }
  if (typeof value === "string") {
    if ("minLength" in schema && value.length < schema.minLength) return `${where}: shorter than ${schema.minLength}`;
    if ("maxLength" in schema && value.length > schema.maxLength) return `${where}: longer than ${schema.maxLength}`;
    if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) return `${where}: not of the form ${schema.pattern}`;
  }
  if (Array.isArray(value)) {
    if ("minItems" in schema && value.length < schema.minItems) return `${where}: fewer than ${schema.minItems} items`;
    if ("maxItems" in schema && value.length > schema.maxItems) return `${where}: more than ${schema.maxItems} items`;
    for (let k = 0; k < value.length; k++) {
      const item = schema.prefixItems?.[k] ?? schema.items;
      const bad = item ? mismatch(value[k], item, `${where}.${k}`) : null;
      if (bad) return bad;
    }
  }
  return null;
}

/** `message` if it is an imaging message as the server defines it; else throws
 *  ImagingMessageError with the reason. Fields the schema does not name are refused: the
 *  server forbids them, so one here is not a message of this version. */
export function checkImagingMessage(message) {
  if (jsonType(message) !== "object") throw new ImagingMessageError("a message is a JSON object");
  const def = BY_TYPE.get(message.type);
  if (!def) throw new ImagingMessageError(`not an imaging message: ${JSON.stringify(message.type)}`);
  for (const field of def.required ?? []) {
    if (!(field in message)) throw new ImagingMessageError(`${field}: required`);
  }
  for (const [field, value] of Object.entries(message)) {
    const schema = def.properties[field];
    if (!schema) throw new ImagingMessageError(`${field}: not a field of ${message.type}`);
    const bad = mismatch(value, schema, field);
    if (bad) throw new ImagingMessageError(bad);
  }
  return message;
}

const round = (value, places) => {
  const k = 10 ** places;
  return Math.round(value * k) / k;
};

/** The `imaging.view` message saying what this page shows: `window` [centre, width] or null
 *  (the image's own), `pointer` [x, y] in image pixels or null. Values are rounded (a
 *  pointer to a tenth of a pixel) and checked; throws ImagingMessageError if out of range. */
export function viewMessage({ study, series, sop, frame = 1, window = null, pointer = null }) {
  const message = {
    type: "imaging.view", study, series, sop, frame,
    window: window ? [round(window[0], 2), round(window[1], 2)] : null,
    pointer: pointer ? [round(pointer[0], 1), round(pointer[1], 1)] : null,
  };
  return checkImagingMessage(message);
}
