"""Bedside sound: capture, Opus encoding for the stethoscope, tracks for aiortc, talk-back.

A source (a test tone or click train, a WAV file, an ALSA device) is read in a thread of its
own (:mod:`media.audio.capture`) in 20 ms mono blocks at 48 kHz and handed to the event loop
through a bounded drop-oldest mailbox. One :class:`~media.audio.feed.AudioFeed` serves every
viewer's connection from that one capture; each connection's track gets frames (voice:
aiortc's Opus encoder) or packets (stethoscope: :mod:`media.audio.opus`, encoded once off the
event loop) of its own. Talk-back from the viewers goes to one sink (a WAV file, an ALSA
device), one speaker at a time (:mod:`media.audio.talkback`).
"""

from __future__ import annotations

import enum


class AudioMode(enum.StrEnum):
    """What the bedside's sound is, and so how it is encoded.

    ``voice``: a room microphone; aiortc's Opus encoder (application ``voip``, which applies
    a speech high-pass that removes most of 20-60 Hz). ``stethoscope``: a digital
    stethoscope; Opus fullband, application ``lowdelay`` (no speech filter), at least
    64 kb/s, and no gain control, noise suppression or echo cancellation anywhere."""

    VOICE = "voice"
    STETHOSCOPE = "stethoscope"
