// The server's HTTP API with the session token; the token is refreshed before it expires.
export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export class Api {
  constructor() {
    this.token = null;
    this.principal = null;
    this._refreshTimer = null;
    this.onExpired = () => {};
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
    this.token = null;
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

  /** Drop the session locally (the server has ended it). */
  forget() {
    clearTimeout(this._refreshTimer);
    this.token = null;
  }

  _accept(body) {
    this.token = body.token;
    this.principal = body.principal;
    this.idleTimeoutS = body.idle_timeout_s;
    this._issuedAt = Date.now();
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
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (authorised && this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
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
