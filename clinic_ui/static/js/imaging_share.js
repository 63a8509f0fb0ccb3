// Who leads the shared view of the room's images (imaging.view), so that two doctors never
// fight over it. Pure: the panel asks it what to do and shows `mode`.
//
// - "alone": nobody shares yet. Changing the image, frame or window makes this page lead.
// - "leading": what this page shows is sent to the room (image, frame, window, pointer).
// - "following": views from the leader (`leader`, a peer id) are applied here; this page's
//   shared controls wait until the user presses "Take control" (zoom, pan and measuring
//   stay one's own). A view from someone else means they took control: follow them.
// - "independent": the user chose to look alone: nothing sent, nothing applied; who shares
//   is still known (`leader`), to follow again.
// The last to take control wins; two pressing at once each end up following the other,
// and one press settles it.

export class ShareState {
  constructor() {
    this.mode = "alone";
    this.leader = null; // the peer id whose views we follow (or would)
  }

  /** This page's user changed a shared part of the view: true if it is to be sent. */
  localChange() {
    if (this.mode === "alone") this.mode = "leading";
    return this.mode === "leading";
  }

  /** May the user change the shared view here (not while following someone)? */
  get mayChange() {
    return this.mode !== "following";
  }

  /** A view arrived from peer `from`: true if it is to be applied. */
  received(from) {
    if (!from) return false;
    if (this.mode === "independent") {
      this.leader = from;
      return false;
    }
    this.mode = "following";
    this.leader = from;
    return true;
  }

  /** The user pressed "Take control": this page leads from now; send the view at once. */
  takeControl() {
    this.mode = "leading";
    this.leader = null;
  }

  /** The user chose to look alone. */
  goIndependent() {
    if (this.mode === "following") this.mode = "independent";
    else if (this.mode === "leading") { this.mode = "alone"; this.leader = null; }
  }

  /** The user wants to follow the one sharing again (the next view they send is applied). */
  follow() {
    if (this.mode === "independent" && this.leader) this.mode = "following";
  }

  /** Peer `id` left the room: if they led, nobody does now. */
  left(id) {
    if (this.leader !== id) return;
    this.leader = null;
    if (this.mode === "following" || this.mode === "independent") this.mode = "alone";
  }
}
