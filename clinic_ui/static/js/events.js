// The events channel from the bedside (media/rtc/events.py is the definition): messages are
// read by their `type` and checked against the generated schema, never matched as text.
import { EVENTS_SCHEMA, EVENTS_VERSION } from "./protocol.js";

export { EVENTS_VERSION };

export class EventError extends Error {}

/** The schema of each message type, by its `type` (other definitions are parts of them). */
const BY_TYPE = new Map(
  Object.values(EVENTS_SCHEMA.$defs)
    .filter((def) => def.properties?.type?.const)
    .map((def) => [def.properties.type.const, def]),
);

function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value; // string, boolean, object
}

const PATTERNS = new Map();

/** The compiled RegExp of a schema pattern (compiled once: messages arrive many a second). */
function patternOf(source) {
  let re = PATTERNS.get(source);
  if (!re) PATTERNS.set(source, (re = new RegExp(source, "u")));
  return re;
}

/** Why `value` does not match `schema` (the subset our generated schema uses), or null. */
function mismatch(value, schema, where) {
  if (schema.$ref) {
    const def = EVENTS_SCHEMA.$defs[schema.$ref.replace("#/$defs/", "")];
    return def ? objectMismatch(value, def, where) : `${where}: unknown part ${schema.$ref}`;
  }
  if (schema.anyOf) {
    return schema.anyOf.some((s) => mismatch(value, s, where) === null)
      ? null : `${where}: ${JSON.stringify(value)} matches none of the allowed types`;
  }
  if ("const" in schema && value !== schema.const) return `${where}: must be ${JSON.stringify(schema.const)}`;
  if (schema.enum && !schema.enum.includes(value)) {
    return `${where}: ${JSON.stringify(value)} is not one of ${schema.enum.join(", ")}`;
  }
  if (schema.type) {
    const actual = jsonType(value);
    const ok = actual === schema.type || (schema.type === "number" && actual === "integer");
    if (!ok) return `${where}: expected ${schema.type}, got ${actual}`;
  }
  if (typeof value === "number") {
    if ("minimum" in schema && value < schema.minimum) return `${where}: below ${schema.minimum}`;
    if ("maximum" in schema && value > schema.maximum) return `${where}: above ${schema.maximum}`;
    if ("exclusiveMinimum" in schema && value <= schema.exclusiveMinimum) {
      return `${where}: must exceed ${schema.exclusiveMinimum}`;
    }
  }
  if (typeof value === "string") {
    if ("maxLength" in schema && value.length > schema.maxLength) return `${where}: longer than ${schema.maxLength}`;
    if ("minLength" in schema && value.length < schema.minLength) return `${where}: shorter than ${schema.minLength}`;
    if (schema.pattern && !patternOf(schema.pattern).test(value)) return `${where}: not of the form ${schema.pattern}`;
  }
  if (Array.isArray(value) && "maxItems" in schema && value.length > schema.maxItems) {
    return `${where}: more than ${schema.maxItems} items`;
  }
  if (Array.isArray(value) && schema.items) {
    for (let k = 0; k < value.length; k++) {
      const bad = mismatch(value[k], schema.items, `${where}.${k}`);
      if (bad) return bad;
    }
  }
  return null;
}

/** Why the object `value` does not match the object schema `def`, or null. */
function objectMismatch(value, def, where) {
  if (jsonType(value) !== "object") return `${where}: expected object, got ${jsonType(value)}`;
  for (const field of def.required ?? []) {
    if (!(field in value)) return `${where ? `${where}.` : ""}${field}: required`;
  }
  for (const [field, schema] of Object.entries(def.properties ?? {})) {
    if (field in value) {
      const bad = mismatch(value[field], schema, where ? `${where}.${field}` : field);
      if (bad) return bad;
    }
  }
  return null;
}

/** One message from its JSON text; throws EventError with the reason when it is not ours.
 *  Fields the schema does not name are ignored (added later within the version). */
export function parseEvent(text) {
  if (typeof text !== "string") throw new EventError("not a text message");
  let message;
  try {
    message = JSON.parse(text);
  } catch (err) {
    throw new EventError(`not JSON: ${err.message}`);
  }
  if (jsonType(message) !== "object") throw new EventError("a message is a JSON object");
  const def = BY_TYPE.get(message.type);
  if (!def) throw new EventError(`unknown type ${JSON.stringify(message.type)}`);
  const bad = objectMismatch(message, def, "");
  if (bad) throw new EventError(bad);
  return message;
}

/** The reply to a heartbeat ping: its `seq` and `at` echoed. */
export function ackFor(ping) {
  return JSON.stringify({ type: "hb-ack", seq: ping.seq, at: ping.at });
}

/** A clinician's request for what the bedside kept of a waveform's samples `first` to
 *  `first + count - 1` (after a link's gap); throws EventError when it is not a valid one. */
export function historyRequest(channel, first, count) {
  const message = { type: "waveform-history-request", channel, first, count };
  const bad = objectMismatch(message, BY_TYPE.get(message.type), "");
  if (bad) throw new EventError(bad);
  return JSON.stringify(message);
}
