// The signaling WebSocket (signaling/schema.py): hello, join, relay, chat, ping. Reconnects
// with backoff and full jitter, and joins the consultation again.
import { CloseCode, PROTOCOL_VERSION } from "./protocol.js";

/** Close codes after which reconnecting is pointless: the session is over. */
const FINAL = new Set([CloseCode.UNAUTHORIZED, CloseCode.SESSION_EXPIRED]);

export class Signaling extends EventTarget {
  constructor(tokenSource) {
    super();
    this.tokenSource = tokenSource; // () => the current token
    this.ws = null;
    this.peerId = null;
    this.consultationId = null;
    this.closed = false;
    this.attempt = 0;
    this._ping = null;
    this._nonce = 0;
  }

  connect() {
    this.closed = false;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "hello", v: PROTOCOL_VERSION, token: this.tokenSource(), client: "clinic-ui" }));
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "welcome") {
        this.peerId = message.peer_id;
        this.attempt = 0;
        if (this.consultationId) this.send({ type: "join", consultation_id: this.consultationId });
        this._ping = setInterval(() => this.send({ type: "ping", nonce: ++this._nonce }), 10000);
      }
      if (message.type === "pong") return;
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    };
    ws.onclose = (event) => {
      clearInterval(this._ping);
      this.peerId = null;
      this.dispatchEvent(new CustomEvent("down", { detail: { code: event.code } }));
      if (this.closed || FINAL.has(event.code)) return;
      const ceiling = Math.min(15000, 250 * 2 ** this.attempt++);
      setTimeout(() => { if (!this.closed) this.connect(); }, ceiling / 4 + Math.random() * ceiling * 0.75);
    };
  }

  join(consultationId) {
    this.consultationId = consultationId;
    this.send({ type: "join", consultation_id: consultationId });
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
    if (this.ws) this.ws.close(1000);
  }
}
