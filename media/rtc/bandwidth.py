"""What aiortc knows of a video sender's path, fed to a :class:`~media.rtc.adapt.VideoAdapter`,
and the adapter's target handed back to aiortc's encoder.

aiortc has no public API for either: the receiver's REMB and receiver reports reach only
``RTCRtpSender._handle_rtcp_packet`` (which sets the encoder's target to the REMB value), and
the encoder is the sender's private attribute. Everything that touches those internals is
here, and ``tests/media/test_bandwidth.py`` runs it between two real aiortc peers, so an
aiortc release that changes them fails a test instead of silently sending at full rate.

aiortc's encoders also refuse targets under a floor (VP8 250 kbit/s, H.264 500 kbit/s): a
path of 256 kbit/s could then never get below its own capacity. :func:`lower_encoder_floors`
lowers both, once, to :data:`~media.rtc.adapt.MIN_TARGET_BPS`, and raises VP8's ceiling
(1.5 Mbit/s) to :data:`~media.rtc.adapt.DIAGNOSTIC_MAX_BPS`, the most a diagnostic camera's
adapter asks for (the room camera's asks no more than it did).

A sender of already encoded pictures (``media.rtc.shared_encoder``) has no encoder of its own
to force a key frame in: :func:`route_keyframe_requests` hands the receiver's picture loss
indications and FIRs to whoever encodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.codecs import h264, vpx
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from media.rtc.adapt import DIAGNOSTIC_MAX_BPS, MIN_TARGET_BPS, VideoAdapter

log = logging.getLogger(__name__)

_ENCODER_ATTRIBUTE = "_RTCRtpSender__encoder"
#: The middle of the last sender report's NTP time, and when it was sent (wall clock).
_LSR_ATTRIBUTE = "_RTCRtpSender__lsr"
_LSR_TIME_ATTRIBUTE = "_RTCRtpSender__lsr_time"


def lower_encoder_floors() -> None:
    """Let aiortc's VP8 and H.264 encoders go down to the adapter's least target, and up to
    a diagnostic camera's most."""
    vpx.MIN_BITRATE = min(vpx.MIN_BITRATE, MIN_TARGET_BPS)
    h264.MIN_BITRATE = min(h264.MIN_BITRATE, MIN_TARGET_BPS)
    vpx.MAX_BITRATE = max(vpx.MAX_BITRATE, DIAGNOSTIC_MAX_BPS)
    h264.MAX_BITRATE = max(h264.MAX_BITRATE, DIAGNOSTIC_MAX_BPS)


def encoder_target(sender: RTCRtpSender) -> int | None:
    """The bitrate the sender's encoder is set to (None before its first frame)."""
    encoder = getattr(sender, _ENCODER_ATTRIBUTE, None)
    target = getattr(encoder, "target_bitrate", None)
    return int(target) if isinstance(target, int) else None


def apply_target(sender: RTCRtpSender, adapter: VideoAdapter) -> None:
    """Set the sender's encoder to the adapter's target (nothing while it sends no video)."""
    target = adapter.target_bps
    encoder: Any = getattr(sender, _ENCODER_ATTRIBUTE, None)
    if target > 0 and getattr(encoder, "target_bitrate", target) != target:
        encoder.target_bitrate = target


def follow_path(
    sender: RTCRtpSender,
    adapter: VideoAdapter,
    clock: Callable[[], float] = time.monotonic,
    on_rtcp: Callable[[], None] | None = None,
) -> None:
    """Route the RTCP the sender receives (REMB, receiver reports for its stream) into
    ``adapter`` as well, and after aiortc has handled each packet put the adapter's target
    back on the encoder (aiortc would otherwise leave it at the REMB value). ``on_rtcp`` is
    told of every packet: the other side is alive and the path delivers."""
    lower_encoder_floors()
    handle: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def observed(packet: Any) -> None:
        if on_rtcp is not None:
            on_rtcp()
        await handle(packet)
        try:
            _observe(sender, adapter, packet, clock())
        except Exception:  # an RTCP packet we misread must not stop aiortc's RTCP loop
            log.exception("could not read an RTCP packet for the video adaptation")
        apply_target(sender, adapter)

    sender._handle_rtcp_packet = observed  # type: ignore[method-assign]


def route_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Call ``request`` for every key frame the receiver asks the sender for (RTCP PLI and
    FIR). aiortc's ``_handle_rtcp_packet`` answers both with ``_send_keyframe``, which only
    sets a flag its own encoder reads: useless when the track gives encoded packets."""
    sender._send_keyframe = request  # type: ignore[method-assign]


def _observe(sender: RTCRtpSender, adapter: VideoAdapter, packet: Any, now: float) -> None:
    ssrc = sender._ssrc
    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        for report in packet.reports:
            if report.ssrc == ssrc:
                rtt = _round_trip(sender, report.lsr, report.dlsr)
                if rtt is not None:
                    adapter.on_rtt(rtt, now)
                adapter.on_loss(report.fraction_lost / 256.0, now)
    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return  # an application packet that is not REMB
        if ssrc in ssrcs:
            adapter.on_remb(bitrate, now)


def _round_trip(sender: RTCRtpSender, lsr: int, dlsr: int) -> float | None:
    """This report's own round trip (RFC 3550 6.4.1: now, less when the sender report it
    names was sent, less the receiver's delay since), not aiortc's smoothed one, which
    stayed high for 7 s after a queue had drained and kept the path "congested"."""
    sent_lsr = getattr(sender, _LSR_ATTRIBUTE, None)
    sent_at = getattr(sender, _LSR_TIME_ATTRIBUTE, None)
    if sent_lsr is None or sent_at is None or lsr != sent_lsr or not dlsr:
        return None
    return float(time.time() - sent_at - dlsr / 65536)
