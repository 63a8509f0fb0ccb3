// The clinicians' call negotiation (clinic_ui/static/js/call.js) against a scripted
// RTCPeerConnection: what reaches the other side when messages overlap. The whole call runs
// between two real Chromium pages in tests/e2e/test_call.py.
import assert from "node:assert/strict";
import { test } from "node:test";

/** A peer connection that keeps the signaling state as the W3C state machine does and lets
 *  the test decide when setRemoteDescription finishes. */
class ScriptedPeerConnection {
  constructor() {
    this.signalingState = "stable";
    this.connectionState = "new";
    this.localDescription = null;
    this.transceivers = [];
    this.held = null; // resolves the next setRemoteDescription, when set
  }

  createDataChannel() {
    return { readyState: "connecting", send() {} };
  }

  getTransceivers() {
    return this.transceivers;
  }

  addTransceiver(track) {
    const transceiver = {
      mid: null, stopped: false, direction: "sendrecv",
      receiver: { track: { kind: track.kind } }, sender: { track, replaceTrack() {} },
    };
    this.transceivers.push(transceiver);
    return transceiver;
  }

  async setRemoteDescription({ type }) {
    if (this.held) await new Promise((resolve) => { this.held.push(resolve); });
    if (type === "offer") {
      this.signalingState = "have-remote-offer";
      for (const kind of ["audio", "video"]) {
        if (!this.transceivers.some((t) => t.mid !== null && t.receiver.track.kind === kind)) {
          this.transceivers.push({
            mid: String(this.transceivers.length), stopped: false, direction: "recvonly",
            receiver: { track: { kind } }, sender: { track: null, replaceTrack(t) { this.track = t; } },
          });
        }
      }
    } else {
      this.signalingState = "stable";
    }
  }

  async setLocalDescription() {
    const type = this.signalingState === "have-remote-offer" ? "answer" : "offer";
    this.signalingState = type === "answer" ? "stable" : "have-local-offer";
    this.localDescription = { type, sdp: `${type}-sdp` };
  }

  async getStats() {
    return new Map();
  }

  close() {}
}

class FakeStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }

  getTracks() { return this.tracks; }
  getAudioTracks() { return this.tracks.filter((t) => t.kind === "audio"); }
  getVideoTracks() { return this.tracks.filter((t) => t.kind === "video"); }
  addTrack(t) { this.tracks.push(t); }
}

globalThis.RTCPeerConnection = ScriptedPeerConnection;
globalThis.MediaStream = FakeStream;
const { Call } = await import("../../clinic_ui/static/js/call.js");

function setUp({ mine, theirs, initiator }) {
  const sent = [];
  const signaling = { instance: mine, peerId: "p-me", send: (m) => sent.push(m) };
  const call = new Call(signaling, []);
  const peer = { kind: "user", principal_id: 2, instance: theirs, peer_id: "p-other" };
  call.sync([peer], { initiator });
  return { call, sent, link: call.linkOf("p-other") };
}

test("an offer right behind the answer to ours is taken, not dropped as a collision", async () => {
  // We are impolite ("a" < "b") and offered; the other side answers and at once offers its
  // own change (its camera came after it answered). Both are read before the answer is set.
  const { call, sent, link } = setUp({ mine: "a", theirs: "b", initiator: true });
  try {
    assert.equal(link.polite, false);
    await link._offer();
    assert.deepEqual(sent.map((m) => m.type), ["offer"]);
    link.pc.held = [];
    const answered = call.signal({ type: "answer", from: "p-other", sdp: "their-answer" });
    const offered = call.signal({ type: "offer", from: "p-other", sdp: "their-offer" });
    // Both reach setRemoteDescription (the offer is not dropped); bounded, not a hang.
    for (let i = 0; i < 100 && link.pc.held.length < 2; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(link.pc.held.length, 2, "the offer behind the answer was dropped");
    for (const release of link.pc.held) release();
    await Promise.all([answered, offered]);
    assert.deepEqual(sent.map((m) => m.type), ["offer", "answer"]);
    assert.equal(link.pc.signalingState, "stable");
  } finally {
    call.close();
  }
});

test("an offer while ours is out is a collision: the impolite side ignores it", async () => {
  const { call, sent, link } = setUp({ mine: "a", theirs: "b", initiator: true });
  try {
    await link._offer();
    await call.signal({ type: "offer", from: "p-other", sdp: "their-offer" });
    assert.deepEqual(sent.map((m) => m.type), ["offer"]);
    assert.equal(link.ignoreOffer, true);
  } finally {
    call.close();
  }
});

test("the side that waits for an offer answers it with its media on the offered m-lines", async () => {
  const { call, sent, link } = setUp({ mine: "b", theirs: "a", initiator: false });
  try {
    // The camera and microphone come before the newcomer's offer: nothing is added yet.
    const local = new FakeStream([{ kind: "audio", stop() {} }, { kind: "video", stop() {} }]);
    call.local = local;
    link.useLocal(local);
    assert.equal(link.pc.getTransceivers().length, 0);
    await call.signal({ type: "offer", from: "p-other", sdp: "their-offer" });
    assert.deepEqual(sent.map((m) => m.type), ["answer"]);
    const transceivers = link.pc.getTransceivers();
    assert.deepEqual(transceivers.map((t) => [t.receiver.track.kind, t.direction, t.sender.track?.kind]),
      [["audio", "sendrecv", "audio"], ["video", "sendrecv", "video"]]);
  } finally {
    call.close();
  }
});
