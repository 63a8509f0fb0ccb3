// The bedside link: the WebRTC connection the gateway offers to this browser. Two data
// channels are negotiated with fixed ids (media/rtc/peer.py): 1 "waveforms", unordered and
// never retransmitted; 2 "events", reliable (numerics, statuses, the heartbeat), whose
// messages are read by type (events.js). Media: the bedside's cameras (a video track each,
// named by the `cameras` event through their transceivers' mids: cameras.js) and, when the
// gateway has one, its sound (a microphone or a stethoscope); the gateway may accept our voice back
// (talk-back), which this link sends from `setTalkTrack()` (push-to-talk: the room enables
// the track only while the button is held).
import { ackFor, EVENTS_VERSION, EventError, parseEvent } from "./events.js";
import { decode, WireError } from "./wire.js";

const WAVEFORM_CHANNEL_ID = 1;
const EVENT_CHANNEL_ID = 2;
/** Nothing heard on the events channel for this long: the link is taken as lost. */
const SILENCE_MS = 3000;

export class BedsideLink extends EventTarget {
  constructor(signaling, iceServers) {
    super();
    this.signaling = signaling;
    this.iceServers = iceServers;
    this.pc = null;
    this.remote = null; // the gateway's peer id
    this.lastHeard = 0;
    this.badPackets = 0;
    this.badEvents = 0;
    this.state = "waiting";
    this.talkTrack = null;
    this.canTalk = false; // the gateway's offer accepts audio from us
    this.hello = null; // the gateway's hello: its name, the events version, what its audio is
    this._watch = setInterval(() => this._checkSilence(), 500);
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  async acceptOffer(message) {
    this.closeConnection();
    this.remote = message.from;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this._setState("connecting");
    const waves = pc.createDataChannel("waveforms", {
      ordered: false, maxRetransmits: 0, negotiated: true, id: WAVEFORM_CHANNEL_ID,
    });
    waves.binaryType = "arraybuffer";
    waves.onmessage = (event) => this._onWaveform(event.data);
    const events = pc.createDataChannel("events", { negotiated: true, id: EVENT_CHANNEL_ID });
    this._events = events;
    events.onmessage = (event) => this._onEvent(events, event.data);
    events.onopen = () => { this.lastHeard = Date.now(); this._setState("connected"); };
    let videos = 0;
    pc.ontrack = (event) => {
      const stream = new MediaStream([event.track]);
      if (event.track.kind === "audio") {
        this.dispatchEvent(new CustomEvent("audio", { detail: stream }));
        return;
      }
      // One track per bedside camera: its transceiver's mid is what the `cameras` event
      // names it by; `index` 0 is this connection's first (the room camera until told).
      const detail = { stream, mid: event.transceiver?.mid ?? null, index: videos++ };
      this.dispatchEvent(new CustomEvent("video", { detail }));
    };
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      // mDNS host names (*.local) mean nothing to the gateway; its checks find us anyway.
      if (!c || !c.candidate || c.candidate.includes(".local")) return;
      this.signaling.send({
        type: "candidate", to: this.remote, candidate: c.candidate,
        sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex,
      });
    };
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    this._offerTalkBack(pc);
    await pc.setLocalDescription(await pc.createAnswer());
    this.signaling.send({ type: "answer", to: this.remote, sdp: pc.localDescription.sdp });
  }

  async addCandidate(message) {
    if (!this.pc || message.from !== this.remote || !message.candidate) return;
    try {
      await this.pc.addIceCandidate({
        candidate: message.candidate, sdpMid: message.sdp_mid, sdpMLineIndex: message.sdp_mline_index,
      });
    } catch (err) {
      console.warn("candidate rejected", err);
    }
  }

  /** When the gateway's audio m-line accepts sound from us, send on it (the track may come
   *  later: replaceTrack needs no new negotiation). */
  _offerTalkBack(pc) {
    const audio = pc.getTransceivers().find((t) => t.receiver.track?.kind === "audio");
    // The remote direction as the offer states it: "sendrecv" and "recvonly" take our sound.
    const offered = audio && /a=(sendrecv|recvonly)/.test(this._mediaSection(pc, audio.mid));
    this.canTalk = Boolean(offered);
    if (!offered) return;
    audio.direction = "sendrecv"; // the answer narrows it to what the offer allows
    audio.sender.replaceTrack(this.talkTrack);
    this._talkSender = audio.sender;
    this.dispatchEvent(new CustomEvent("talk", { detail: true }));
  }

  _mediaSection(pc, mid) {
    const sections = pc.remoteDescription.sdp.split(/\r\n(?=m=)/);
    return sections.find((section) => section.includes(`a=mid:${mid}\r\n`)) ?? "";
  }

  /** Send a message of ours on the events channel (events.js validates what comes back);
   *  false when the link is not open. */
  sendEvent(message) {
    const channel = this._events;
    if (!channel || channel.readyState !== "open") return false;
    channel.send(JSON.stringify(message));
    return true;
  }

  /** The track to send for talk-back (a microphone clone, enabled only while talking). */
  setTalkTrack(track) {
    this.talkTrack = track;
    this._talkSender?.replaceTrack(track).catch(() => {});
  }

  /** The gateway's signaling connection is gone. Its media may well not be (a server
   *  restart, its socket dropped): a connected link carries on until it falls silent;
   *  anything else is given up. */
  /** The bedside's peer id left the room: a socket that only dropped ("disconnected": a
   *  server restart) may come back under a new id, so a live connection is kept for it. */
  peerLeft(peerId, reason = "disconnected") {
    if (peerId === this.remote && (this.state !== "connected" || reason !== "disconnected")) {
      this.closeConnection();
      this._setState("waiting");
    }
  }

  _onEvent(channel, text) {
    this.lastHeard = Date.now();
    let message;
    try {
      message = parseEvent(text);
    } catch (err) {
      if (!(err instanceof EventError)) throw err;
      this.badEvents++;
      console.warn("bedside message refused:", err.message);
      return;
    }
    switch (message.type) {
      case "hb": // the gateway's heartbeat (media/rtc/heartbeat.py): answer each ping
        channel.send(ackFor(message));
        return;
      case "hb-ack":
        return;
      case "hello":
        this.hello = message;
        this.dispatchEvent(new CustomEvent("hello", { detail: message }));
        if (message.v !== EVENTS_VERSION) {
          // Another version's messages could be misread: show nothing rather than that.
          this.dispatchEvent(new CustomEvent("refused", {
            detail: `bedside speaks events version ${message.v}, this page ${EVENTS_VERSION}`,
          }));
          this.closeConnection();
        }
        return;
    }
    this.dispatchEvent(new CustomEvent("event", { detail: message }));
  }

  _onWaveform(data) {
    let packet;
    try {
      packet = decode(data);
    } catch (err) {
      if (err instanceof WireError) { this.badPackets++; return; }
      throw err;
    }
    // Unordered channel: a packet that arrives after a later one still has its place (the
    // trace puts samples by index); what is too old to draw the trace itself leaves out.
    this.dispatchEvent(new CustomEvent("waveform", { detail: packet }));
  }

  _checkSilence() {
    if (this.state === "connected" && Date.now() - this.lastHeard > SILENCE_MS) {
      this._setState("lost"); // the gateway notices too and offers a new connection
    }
  }

  closeConnection() {
    if (this.pc) this.pc.close();
    this.pc = null;
    this._talkSender = null;
    if (this.canTalk) {
      this.canTalk = false;
      this.dispatchEvent(new CustomEvent("talk", { detail: false }));
    }
  }

  close() {
    clearInterval(this._watch);
    this.closeConnection();
  }
}
