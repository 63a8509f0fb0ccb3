"""Media: waveform and frame pipelines and the WebRTC layer (aiortc).

Independent of ``devices`` and ``signaling``; it takes numpy arrays and plain dataclasses.
"""
