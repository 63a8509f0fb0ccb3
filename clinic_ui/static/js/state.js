// The app's one state object: created once by app.js and passed to each view, which keeps
// what it owns under its own key. No view keeps module-level mutable state.
import { Api } from "./api.js";

/**
 * api: the server's HTTP API with the session; sites: the configured sites (after sign-in);
 * signaling: the tab's signaling socket while signed in (signaling.js); list: the
 * consultation list (list.js); room: the open consultation room (room.js), or null.
 */
export function createState() {
  return { api: new Api(), sites: [], signaling: null, list: null, room: null };
}
