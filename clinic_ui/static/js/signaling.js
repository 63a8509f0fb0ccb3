// The signaling WebSocket (signaling/schema.py): one per signed-in tab, open from sign-in to
// sign-out. Outside a room it hears the site's consultation changes (the lobby); in a room
// it joins the consultation and relays offers, answers, candidates and chat. Reconnects
// with backoff and full jitter, and joins the consultation again.
import { CloseCode, PROTOCOL_VERSION } from "./protocol.js";

/** Close codes after which reconnecting is pointless: the session is over. */
const FINAL = new Set([CloseCode.UNAUTHORIZED, CloseCode.SESSION_EXPIRED]);

/** This tab's id for itself, sent in every hello (signaling/schema.py `Hello.instance`): the
 *  same across reconnections and reloads of the tab, so the bedside gateway knows us when we
 *  come back under a new peer id and keeps the media it sends us. */
function tabInstance(storage = globalThis.sessionStorage) {
  const KEY = "telemed.instance";
  let id = storage?.getItem(KEY);
  if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
    storage?.setItem(KEY, id);
  }
  return id;
}

/** Events: "message" (detail: a server message), "down" (detail: {code}), "welcome". */
export class Signaling extends EventTarget {
  constructor(tokenSource) {
    super();
    this.tokenSource = tokenSource; // () => the current token
    this.instance = tabInstance();
    this.ws = null;
    this.peerId = null;
    this.consultationId = null;
    this.closed = false;
    this.attempt = 0;
    this._ping = null;
    this._retry = null;
    this._nonce = 0;
  }

  get connected() {
    return this.peerId !== null && this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    this.closed = false;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "hello", v: PROTOCOL_VERSION, token: this.tokenSource(), client: "clinic-ui",
        instance: this.instance,
      }));
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "welcome") {
        this.peerId = message.peer_id;
        this.attempt = 0;
        if (this.consultationId) this.send({ type: "join", consultation_id: this.consultationId });
        clearInterval(this._ping);
        this._ping = setInterval(() => this.send({ type: "ping", nonce: ++this._nonce }), 10000);
        this.dispatchEvent(new CustomEvent("welcome", { detail: message }));
      }
      if (message.type === "pong") return;
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return; // an earlier socket, already replaced
      clearInterval(this._ping);
      this.peerId = null;
      this.dispatchEvent(new CustomEvent("down", { detail: { code: event.code } }));
      if (this.closed || FINAL.has(event.code)) return;
      const ceiling = Math.min(15000, 250 * 2 ** this.attempt++);
      this._retry = setTimeout(() => { if (!this.closed) this.connect(); },
        ceiling / 4 + Math.random() * ceiling * 0.75);
    };
  }

  /** Join a consultation now (if connected) and after every reconnection. */
  join(consultationId) {
    if (this.consultationId === consultationId) return;
    this.leave();
    this.consultationId = consultationId;
    // Before the welcome the welcome handler joins: joining twice would be refused.
    if (this.peerId !== null) this.send({ type: "join", consultation_id: consultationId });
  }

  leave() {
    if (this.consultationId) this.send({ type: "leave", consultation_id: this.consultationId });
    this.consultationId = null;
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    clearInterval(this._ping);
    clearTimeout(this._retry);
    if (this.ws) this.ws.close(1000);
  }
}
