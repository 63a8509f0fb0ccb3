// The server's HTTP API with the session token; the token is refreshed before it expires.
// The session lives in sessionStorage: it survives a reload of this tab, never reaches
// another tab, and is gone with the tab or on sign-out.
const SESSION_KEY = "telemed.session";
export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export class Api {
  constructor(storage = globalThis.sessionStorage) {
    this.token = null;
    this.principal = null;
    this._refreshTimer = null;
    this._storage = storage;
    this.onExpired = () => {};
  }

  /** Take up the session this tab had before a reload; true if there was one. The server
   *  still decides whether it is live (the first call may end in onExpired). */
  restore() {
    let saved;
    try {
      saved = JSON.parse(this._storage?.getItem(SESSION_KEY) ?? "null");
    } catch {
      saved = null;
    }
    if (!saved?.token || !saved.principal) return false;
    this._accept(saved, saved.issuedAt);
    this._touched = saved.issuedAt; // a reload is someone at the screen
    return true;
  }

  async login(username, password) {
    const body = await this._fetch("POST", "/api/auth/login", { username, password }, false);
    this._accept(body);
    return body.principal;
  }

  async logout() {
    clearTimeout(this._refreshTimer);
    if (this.token) {
      try { await this._fetch("POST", "/api/auth/logout"); } catch { /* already gone */ }
    }
    this.forget();
    this.principal = null;
  }

  get(path) { return this._fetch("GET", path); }

  /** Someone is at the keyboard: tell the server (at most once a minute), so that a doctor
   *  watching a consultation is not logged out as idle. Pings and media do not count. */
  touch() {
    const now = Date.now();
    const every = Math.min(60000, (this.idleTimeoutS ?? 900) * 250); // a quarter of the timeout
    if (!this.token || now - (this._touched ?? 0) < every) return;
    this._touched = now;
    this._fetch("GET", "/api/auth/me").catch(() => { /* onExpired has run if it must */ });
  }
  post(path, body) { return this._fetch("POST", path, body); }

  /** POST raw bytes (e.g. an image Blob) with their content type. */
  postBytes(path, blob) {
    return this._fetch("POST", path, blob);
  }

  /** Drop the session locally (the server has ended it, or the user signed out). */
  forget() {
    clearTimeout(this._refreshTimer);
    this.token = null;
    this._storage?.removeItem(SESSION_KEY);
  }

  _accept(body, issuedAt = Date.now()) {
    this.token = body.token;
    this.principal = body.principal;
    this.idleTimeoutS = body.idle_timeout_s;
    this._issuedAt = issuedAt;
    this._storage?.setItem(SESSION_KEY, JSON.stringify({
      token: body.token, principal: body.principal, idle_timeout_s: body.idle_timeout_s,
      expires_at: body.expires_at, issuedAt,
    }));
    clearTimeout(this._refreshTimer);
    const lifetime = new Date(body.expires_at).getTime() - Date.now();
    // Refresh at 80 % of the token's life: a consultation outlives one token.
    this._refreshTimer = setTimeout(() => this._refresh(), Math.max(5000, lifetime * 0.8));
  }

  async _refresh() {
    // Only for someone who is there: a refresh counts as activity on the server, and an
    // unattended screen must still be logged out when idle.
    if ((this._touched ?? 0) < this._issuedAt) return;
    try {
      this._accept(await this._fetch("POST", "/api/auth/refresh"));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.onExpired();
      else this._refreshTimer = setTimeout(() => this._refresh(), 10000);
    }
  }

  async _fetch(method, path, body, authorised = true) {
    const headers = { "Accept": "application/json" };
    const raw = typeof Blob !== "undefined" && body instanceof Blob;
    if (body !== undefined) headers["Content-Type"] = raw ? body.type : "application/json";
    if (authorised && this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      if (response.status === 401 && authorised) this.onExpired();
      throw new ApiError(response.status, detail);
    }
    return data;
  }
}
