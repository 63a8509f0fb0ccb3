// Voice and video between the clinicians in the room: a full mesh (each pair of browsers
// one RTCPeerConnection, negotiated through /ws with the perfect-negotiation pattern), apart
// from the bedside link (peer.js). Up to six participants; beyond that the same room would
// run on an SFU (docs/sfu.md), behind the same signaling.
//
// Glare: the newcomer offers (it learns of the others from `joined`), those present wait
// for its offer; when both offer anyway (both re-joined after a server restart), the polite
// side (the larger peer id) rolls back and answers, the impolite one ignores the offer.

/** Participants beyond this are refused by the mesh: each one costs every other an upload. */
export const MAX_PARTICIPANTS = 6;
const STATS_EVERY_MS = 2000;
const SPEAKING_RMS = 0.02;
/** Call-state messages (mute, camera) travel on a negotiated data channel of each pair. */
const STATE_CHANNEL_ID = 0;

/** Link quality from two getStats samples: RTT (s), loss (0..1), kbit/s received. */
export function linkQuality(prev, now, connectionState) {
  if (connectionState === "failed" || connectionState === "disconnected" || connectionState === "closed") {
    return { state: "lost", rtt: null, loss: null, kbps: 0 };
  }
  const lost = now.packetsLost - (prev?.packetsLost ?? 0);
  const received = now.packetsReceived - (prev?.packetsReceived ?? 0);
  const seconds = prev ? (now.at - prev.at) / 1000 : 0;
  const kbps = seconds > 0 ? (8 * (now.bytesReceived - prev.bytesReceived)) / 1000 / seconds : null;
  const loss = lost + received > 0 ? Math.max(0, lost) / (Math.max(0, lost) + received) : 0;
  let state = "good";
  if (loss > 0.05 || (now.rtt ?? 0) > 0.4) state = "poor";
  if (prev && received === 0 && connectionState === "connected") state = "poor";
  return { state, rtt: now.rtt ?? null, loss, kbps };
}

/** The figures linkQuality() needs, summed over a connection's inbound streams. */
export function statsSample(report, at) {
  const sample = { at, packetsLost: 0, packetsReceived: 0, bytesReceived: 0, rtt: null };
  report.forEach((s) => {
    if (s.type === "inbound-rtp") {
      sample.packetsLost += s.packetsLost ?? 0;
      sample.packetsReceived += s.packetsReceived ?? 0;
      sample.bytesReceived += s.bytesReceived ?? 0;
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      sample.rtt = s.currentRoundTripTime ?? sample.rtt;
    }
  });
  return sample;
}

/** Who a peer is across its reconnections: kind, account and the client's own instance id
 *  (its peer id when it names none), as the gateway keys its peers (telemed/gateway/peers.py).
 *  A server restart gives everyone new peer ids; a call keyed by this keeps its connections. */
export function identityOf(peer) {
  return `${peer.kind}:${peer.principal_id}:${peer.instance ?? peer.peer_id}`;
}

/** Events: "participants" (the set changed), "quality" ({peerId, ...linkQuality}),
 *  "speaking" ({peerId | "self", speaking}), "media" (local media started or failed). */
export class Call extends EventTarget {
  constructor(signaling, iceServers) {
    super();
    this.signaling = signaling;
    this.iceServers = iceServers;
    this.local = null; // MediaStream of the microphone and camera, once granted
    this.mediaError = null;
    this.muted = false;
    this.cameraOff = false;
    this.speakerId = "";
    this.links = new Map(); // identity (identityOf) -> Link
    this.ids = new Map(); // peer id -> identity, for every peer id a link has had
    this._audio = null;
    this.meters = new Map();
    this._stats = setInterval(() => this._sampleStats(), STATS_EVERY_MS);
    this._meter = setInterval(() => this._measureSpeaking(), 150);
  }

  /** Ask for the microphone and camera (device ids optional); without them the call still
   *  receives the others (and says why in `mediaError`). */
  async startMedia({ audioId, videoId } = {}) {
    const constraints = {
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true,
        ...(audioId ? { deviceId: { exact: audioId } } : {}) },
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 },
        ...(videoId ? { deviceId: { exact: videoId } } : {}) },
    };
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      // No camera (a tablet in a dock, a workstation): try the microphone alone.
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: constraints.audio });
        this.mediaError = "noCamera";
      } catch {
        this.mediaError = err.name === "NotAllowedError" ? "denied" : "noDevices";
      }
    }
    const old = this.local;
    this.local = stream;
    if (stream) {
      for (const track of stream.getAudioTracks()) track.enabled = !this.muted;
      for (const track of stream.getVideoTracks()) track.enabled = !this.cameraOff;
      for (const link of this.links.values()) link.useLocal(stream);
      this._meterFor("self", stream);
    }
    old?.getTracks().forEach((t) => t.stop());
    this.dispatchEvent(new CustomEvent("media", { detail: { stream, error: this.mediaError } }));
    return stream;
  }

  get micTrack() {
    return this.local?.getAudioTracks()[0] ?? null;
  }

  /** The link to a peer id (current or earlier) of a clinician, if any. */
  linkOf(peerId) {
    return this.links.get(this.ids.get(peerId));
  }

  /** The speaking meter of a clinician's peer id, if any. */
  meterOf(peerId) {
    return this.meters.get(this.ids.get(peerId));
  }

  /** The room's clinicians changed: `peers` are the other clinicians' peers (not ours). A
   *  clinician already linked under an earlier peer id (we or they reconnected to the
   *  server) keeps the connection; one no longer listed is let go (see _absent). */
  sync(peers, { initiator }) {
    const wanted = new Map(peers.slice(0, MAX_PARTICIPANTS - 1).map((p) => [identityOf(p), p]));
    for (const key of [...this.links.keys()]) if (!wanted.has(key)) this._absent(key);
    for (const [key, peer] of wanted) {
      const link = this.links.get(key);
      if (link) this._known(key, link, peer);
      else this._add(peer, initiator);
    }
    this.dispatchEvent(new CustomEvent("participants"));
  }

  /** A clinician joined after us: they will offer (unless we are still connected to them
   *  from before their reconnection). */
  joined(peer) {
    const key = identityOf(peer);
    const link = this.links.get(key);
    if (link) this._known(key, link, peer);
    else if (this.links.size < MAX_PARTICIPANTS - 1) this._add(peer, false);
    this.dispatchEvent(new CustomEvent("participants"));
  }

  /** A peer id left the room: a clinician whose socket only dropped ("disconnected")
   *  may come back under a new id, so a live connection is kept for them; one who left
   *  (or a closed consultation) is let go now. */
  remove(peerId, reason = "disconnected") {
    const key = this.ids.get(peerId);
    if (key === undefined || this.links.get(key)?.peer.peer_id !== peerId) return;
    if (reason === "disconnected") this._absent(key);
    else this._drop(key);
  }

  /** An offer, answer or candidate from another clinician. */
  async signal(message) {
    const link = this.linkOf(message.from);
    if (link) await link.signal(message);
  }

  _known(key, link, peer) {
    this.ids.set(peer.peer_id, key);
    link.peer = peer;
    link.absent = false;
  }

  /** The clinician's peer is gone from the room. A connection still up is kept until it
   *  fails or closes (the media does not pass through the server: a server restart or a
   *  dropped socket need not end it); any other is closed now. */
  _absent(key) {
    const link = this.links.get(key);
    if (!link) return;
    if (link.pc.connectionState === "connected") {
      link.absent = true;
      return;
    }
    this._drop(key);
  }

  _drop(key) {
    const link = this.links.get(key);
    if (!link) return;
    link.close();
    this.links.delete(key);
    this.meters.delete(key);
    for (const [id, of] of [...this.ids]) if (of === key) this.ids.delete(id);
    this.dispatchEvent(new CustomEvent("participants"));
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.local?.getAudioTracks() ?? []) track.enabled = !muted;
    this._announce();
  }

  setCameraOff(off) {
    this.cameraOff = off;
    for (const track of this.local?.getVideoTracks() ?? []) track.enabled = !off;
    this._announce();
  }

  async setSpeaker(deviceId) {
    this.speakerId = deviceId;
    for (const element of document.querySelectorAll("audio.remote, video.remote")) {
      if (element.setSinkId) await element.setSinkId(deviceId).catch(() => {});
    }
  }

  _announce() {
    for (const link of this.links.values()) link.sendState({ muted: this.muted, cameraOff: this.cameraOff });
  }

  _add(peer, initiator) {
    // Who yields in a collision, by names that survive reconnections on both sides.
    const polite = (this.signaling.instance ?? this.signaling.peerId ?? "") > (peer.instance ?? peer.peer_id);
    const key = identityOf(peer);
    const link = new Link(this, peer, polite, initiator);
    this.links.set(key, link);
    this.ids.set(peer.peer_id, key);
    if (this.local) link.useLocal(this.local);
  }

  _meterFor(key, stream) {
    if (!stream.getAudioTracks().length) return;
    try {
      this._audio ??= new AudioContext();
      const source = this._audio.createMediaStreamSource(stream);
      const analyser = this._audio.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      this.meters.set(key, { analyser, data: new Float32Array(analyser.fftSize), speaking: false });
    } catch {
      // No audio processing here: the call works without the speaking indicator.
    }
  }

  _measureSpeaking() {
    if (this._audio?.state === "suspended") this._audio.resume().catch(() => {});
    for (const [key, meter] of this.meters) {
      meter.analyser.getFloatTimeDomainData(meter.data);
      let sum = 0;
      for (const v of meter.data) sum += v * v;
      const speaking = Math.sqrt(sum / meter.data.length) > SPEAKING_RMS && !(key === "self" && this.muted);
      if (speaking !== meter.speaking) {
        meter.speaking = speaking;
        this.dispatchEvent(new CustomEvent("speaking", { detail: { peerId: key, speaking } }));
      }
    }
  }

  async _sampleStats() {
    for (const link of this.links.values()) {
      const peerId = link.peer.peer_id;
      try {
        const sample = statsSample(await link.pc.getStats(), Date.now());
        const quality = linkQuality(link.lastStats, sample, link.pc.connectionState);
        link.lastStats = sample;
        link.quality = quality;
        this.dispatchEvent(new CustomEvent("quality", { detail: { peerId, ...quality } }));
      } catch {
        // A connection closing under us: the next sample will not see it.
      }
    }
  }

  close() {
    clearInterval(this._stats);
    clearInterval(this._meter);
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.ids.clear();
    this.local?.getTracks().forEach((t) => t.stop());
    this.local = null;
    this._audio?.close().catch(() => {});
  }
}

/** One pair's connection, negotiated with the perfect-negotiation pattern. */
class Link {
  /** `initiator`: we offer first (negotiationneeded fires once the data channel and our
   *  tracks are added); otherwise we wait for the other side's offer. */
  constructor(call, peer, polite, initiator) {
    this.call = call;
    this.peer = peer;
    this.polite = polite;
    this.stream = new MediaStream(); // what the other clinician sends us
    this.remoteState = { muted: false, cameraOff: false };
    this.absent = false; // the peer left the room while this connection stayed up
    this.lastStats = null;
    this.quality = null;
    this.makingOffer = false;
    this.ignoreOffer = false;
    // An answer being applied: the connection is as good as stable for an offer that comes
    // right behind it (the other side answered, then offered its own change at once).
    this.settingAnswer = false;
    this.ready = initiator; // negotiationneeded may offer (the initiator, or after an exchange)
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    this.pc = pc;
    this.state = pc.createDataChannel("call", { negotiated: true, id: STATE_CHANNEL_ID });
    this.state.onopen = () => this.sendState({ muted: call.muted, cameraOff: call.cameraOff });
    this.state.onmessage = (e) => {
      try {
        const s = JSON.parse(e.data);
        this.remoteState = { muted: Boolean(s.muted), cameraOff: Boolean(s.cameraOff) };
        call.dispatchEvent(new CustomEvent("participants"));
      } catch { /* not ours: ignored */ }
    };
    pc.ontrack = ({ track }) => {
      this.stream.addTrack(track);
      if (track.kind === "audio") call._meterFor(identityOf(this.peer), new MediaStream([track]));
      call.dispatchEvent(new CustomEvent("participants"));
    };
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate || !candidate.candidate || candidate.candidate.includes(".local")) return;
      call.signaling.send({
        type: "candidate", to: this.peer.peer_id, candidate: candidate.candidate,
        sdp_mid: candidate.sdpMid, sdp_mline_index: candidate.sdpMLineIndex,
      });
    };
    pc.onnegotiationneeded = () => { if (this.ready) this._offer(); };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (this.absent && (state === "failed" || state === "closed" || state === "disconnected")) {
        call._drop(identityOf(this.peer)); // gone from the room, and now from the wire
        return;
      }
      if (state === "failed" && !this.polite) pc.restartIce();
      call.dispatchEvent(new CustomEvent("participants"));
    };
  }

  async _offer() {
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.call.signaling.send({ type: "offer", to: this.peer.peer_id, sdp: this.pc.localDescription.sdp });
    } catch (err) {
      console.warn("call: offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Send our microphone and camera on this connection: on the transceivers the other side
   *  offered when there are some, on new ones otherwise. Before the other side's first
   *  offer (we are not the one to offer) nothing is added: transceivers added now would not
   *  carry its offer's m-lines (only addTrack's may) and would need a second exchange;
   *  signal() calls this again with the offer. */
  useLocal(stream) {
    if (!this.ready) return;
    for (const track of stream.getTracks()) {
      const usable = this.pc.getTransceivers().filter((t) => !t.stopped
        && (t.receiver.track?.kind === track.kind) && (!t.sender.track || t.sender.track.kind === track.kind));
      // One that already has a place in the negotiated session first.
      const free = usable.find((t) => t.mid !== null) ?? usable[0];
      if (free) {
        free.sender.replaceTrack(track);
        if (free.direction === "recvonly" || free.direction === "inactive") free.direction = "sendrecv";
        free.sender.setStreams?.(stream);
      } else {
        this.pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
      }
    }
  }

  async signal(message) {
    const pc = this.pc;
    try {
      if (message.type === "offer" || message.type === "answer") {
        // The perfect-negotiation pattern (W3C WebRTC 1.0, section 10.7), including its
        // "answer pending" case: messages are handled concurrently, so an offer may be read
        // while the answer before it is still being applied; without that case the
        // impolite side took it for a collision and dropped it, and the polite side's
        // camera never reached it.
        const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.settingAnswer);
        const collision = message.type === "offer" && !readyForOffer;
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        this.settingAnswer = message.type === "answer";
        try {
          await pc.setRemoteDescription({ type: message.type, sdp: message.sdp });
        } finally {
          this.settingAnswer = false;
        }
        this.ready = true; // from now on either side may renegotiate
        if (message.type === "offer") {
          if (this.call.local) this.useLocal(this.call.local); // answer with our media
          await pc.setLocalDescription();
          this.call.signaling.send({ type: "answer", to: this.peer.peer_id, sdp: pc.localDescription.sdp });
        }
      } else if (message.type === "candidate" && message.candidate) {
        try {
          await pc.addIceCandidate({
            candidate: message.candidate, sdpMid: message.sdp_mid, sdpMLineIndex: message.sdp_mline_index,
          });
        } catch (err) {
          if (!this.ignoreOffer) console.warn("call: candidate refused", err);
        }
      }
    } catch (err) {
      console.warn("call: negotiation failed", err);
    }
  }

  sendState(state) {
    if (this.state.readyState === "open") this.state.send(JSON.stringify(state));
  }

  close() {
    this.pc.close();
  }
}
