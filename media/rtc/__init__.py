"""The WebRTC layer: the data-channel wire format, the heartbeat, and the aiortc peer."""
