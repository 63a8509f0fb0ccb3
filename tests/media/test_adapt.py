"""The video adaptation's rule (media/rtc/adapt.py) on a driven clock: what a path's losses,
round-trip times, REMB (when followed) and send rate make of the rung and the encoder's
target. The ladder's rule is driven through REMB (``use_remb``), the most direct input; the
default estimate, from losses and round-trip times, has tests of its own at the end."""

from __future__ import annotations

from media.rtc.adapt import HEADROOM, LADDER, VideoAdapter, VideoMode


class Path:
    """Drives an adapter as aiortc does: every half second the bytes sent so far, the
    receiver's REMB and (when given) a receiver report's loss."""

    def __init__(self, adapter: VideoAdapter) -> None:
        self.adapter = adapter
        self.now = 0.0
        self.sent = 0
        self.rungs: list[str] = []

    def run(
        self,
        seconds: float,
        send_bps: float | None,
        remb: int | None,
        loss: float | None = None,
        rtt: float | None = None,
    ) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += 0.5
            rate = self.adapter.target_bps if send_bps is None else send_bps
            self.sent += int(rate / 8 * 0.5)
            self.adapter.on_sent(self.sent, self.now)
            if remb is not None:
                self.adapter.on_remb(remb, self.now)
            if loss is not None:
                self.adapter.on_loss(loss, self.now)
            if rtt is not None:
                self.adapter.on_rtt(rtt, self.now)
            self.rungs.append(self.adapter.rung.name)

    def changes(self) -> list[str]:
        return [r for i, r in enumerate(self.rungs) if i == 0 or self.rungs[i - 1] != r]


def _vga() -> VideoAdapter:
    adapter = VideoAdapter(use_remb=True)
    adapter.frame_size(640, 480)
    return adapter


def _warmed(adapter: VideoAdapter | None = None) -> Path:
    """A VGA camera's adapter after 24 s of a clean path that takes 1.5 Mbit/s (its last
    step up long enough ago to have held)."""
    path = Path(adapter or _vga())
    if path.adapter.source_height is None:
        path.adapter.frame_size(640, 480)
    path.run(12.0, 600_000, 1_500_000, loss=0.0)
    assert path.adapter.rung.name == "480p30"
    path.run(12.0, 600_000, 1_500_000, loss=0.0)
    return path


def test_a_vga_camera_starts_reduced_and_climbs_to_its_own_size_on_a_clean_path() -> None:
    adapter = _vga()
    assert adapter.rung.name == "360p15"  # 300 kbit/s to start: no key frame at 480p yet
    assert adapter.frame_size(640, 480) == (480, 360)
    assert adapter.target_bps == 300_000
    path = _warmed(adapter)
    assert path.changes() == ["360p15", "480p30"]
    assert adapter.frame_size(640, 480) == (640, 480)
    assert adapter.mode is VideoMode.FULL
    assert 500_000 <= adapter.target_bps <= 900_000  # toward 480p30's cap: the path takes more


def test_a_camera_between_two_heights_is_full_at_its_own_size_and_rate() -> None:
    adapter = VideoAdapter()
    assert adapter.frame_size(320, 240) == (320, 240)
    assert (adapter.rung.name, adapter.rung.fps) == ("240p30", 30.0)
    assert adapter.mode is VideoMode.FULL


def test_a_congested_path_steps_down_after_a_second_and_caps_the_encoder() -> None:
    path = _warmed()
    path.run(0.5, 500_000, 230_000)  # under 1.2 x 500k sent: the receiver saw queues grow
    assert path.adapter.congested(path.now)
    assert path.adapter.rung.name == "480p30"  # not on one report
    path.run(1.0, 500_000, 230_000)
    # 230k: over 360p15's floor of 160k.
    assert path.adapter.rung.name == "360p15"
    assert path.adapter.mode is VideoMode.REDUCED
    assert path.adapter.target_bps == HEADROOM * 230_000  # room for the data channels
    assert path.adapter.frame_size(640, 480) == (480, 360)


def test_a_collapse_steps_down_at_once_to_the_rung_that_fits() -> None:
    path = _warmed()
    path.run(0.5, 500_000, 140_000)  # under half of 480p30's floor
    assert path.adapter.rung.name == "240p10"
    assert path.adapter.frame_size(640, 480) == (320, 240)
    assert 64_000 <= path.adapter.target_bps <= 200_000


def test_a_still_picture_with_a_low_remb_is_not_congestion() -> None:
    """A REMB is at most 1.5x what arrives: a picture that needs 40 kbit/s gets a REMB
    near 100k on any path, and that says nothing about the path."""
    path = Path(_vga())
    for _ in range(60):
        path.run(0.5, 40_000, 100_000, loss=0.0)
        assert not path.adapter.congested(path.now)
    assert path.changes() == ["360p15"]  # never down


def test_a_still_picture_on_a_calm_path_is_tried_a_step_up_at_a_time() -> None:
    """Sending 40 kbit/s earns no estimate of 350k; a calm path's estimate may still grow
    to the next rung's floor, and the rung is tried."""
    adapter = VideoAdapter()
    adapter.frame_size(640, 480)
    path = Path(adapter)
    path.run(30.0, 40_000, None, loss=0.0, rtt=0.040)
    assert path.changes() == ["360p15", "480p30"]


def test_losses_cut_the_target_and_then_the_rung() -> None:
    path = _warmed()
    targets = []
    for _ in range(6):
        path.run(1.0, 500_000, 1_500_000, loss=0.30)  # 30 % lost in each report
        targets.append(path.adapter.target_bps)
    assert targets == sorted(targets, reverse=True)
    assert targets[-1] < 300_000
    assert path.adapter.rung.name in ("360p15", "240p10")


def test_a_clean_path_steps_back_up_one_rung_at_a_time() -> None:
    path = _warmed()
    path.run(0.5, 500_000, 120_000)
    assert path.adapter.rung.name == "240p10"
    path.run(1.5, 150_000, 120_000)  # still congested: held
    assert path.adapter.rung.name == "240p10"
    path.run(20.0, 150_000, 1_200_000, loss=0.0)  # the path recovers
    assert path.changes() == ["360p15", "480p30", "240p10", "360p15", "480p30"]


def test_a_step_up_taken_back_doubles_the_wait_for_the_next() -> None:
    path = _warmed(VideoAdapter(up_hold_s=2.0, use_remb=True))
    path.run(1.5, 500_000, 300_000)  # 252k: under 1.2 x 500k sent and 480p30's floor
    assert path.adapter.rung.name == "360p15"
    first_wait = _seconds_until_up(path, "360p15")
    path.run(2.0, 400_000, 300_000)  # the step up was too much: back down within 10 s
    assert path.adapter.rung.name == "360p15"
    second_wait = _seconds_until_up(path, "360p15")
    # Reports come each half second: a hold of 2 s shows as 2.5, one of 4 s as 4.5.
    assert first_wait == 2.5
    assert second_wait >= 4.5


def _seconds_until_up(path: Path, rung: str) -> float:
    start = path.now
    while path.adapter.rung.name == rung:
        path.run(0.5, 100_000, 2_000_000, loss=0.0)
        assert path.now - start < 60, "never stepped up"
    return path.now - start


def test_a_reduced_rung_is_tried_one_step_up_after_a_calm_while() -> None:
    path = _vga_by_reports()
    for _ in range(10):
        path.run(1.0, None, None, loss=0.3, rtt=0.040)  # a burst of loss: down
    assert path.adapter.rung.name in ("240p10", "120p5")
    low = path.adapter.rung.name
    # Calm again, at what the lower rung sends: under the next floor with margin, it waits
    # the calm while (8 s) and tries one step.
    path.run(4.0, 60_000, None, loss=0.0, rtt=0.040)
    assert path.adapter.rung.name == low
    path.run(20.0, 60_000, None, loss=0.0, rtt=0.040)
    assert path.adapter.rung.name != low


def test_paused_then_the_lowest_rung_is_tried_again() -> None:
    path = _warmed()
    path.run(0.5, 500_000, 20_000)  # nothing fits: under 120p5's floor of 24k
    assert path.adapter.rung.name == "120p5"  # the lowest first, at once
    path.run(4.0, 40_000, 20_000)  # and still nothing fits: paused
    adapter = path.adapter
    modes = [adapter.mode]
    assert adapter.target_bps == 0
    assert adapter.rung.fps == 0
    adapter.tick(path.now + 7.0)
    modes.append(adapter.mode)
    adapter.tick(path.now + 8.5)
    modes.append(adapter.mode)
    assert modes == [VideoMode.PAUSED, VideoMode.PAUSED, VideoMode.REDUCED]
    assert adapter.rung is LADDER[-2]
    assert adapter.rung.name == "120p5"
    assert adapter.frame_size(640, 480) == (160, 120)


def test_a_720p_camera_can_use_the_top_rung() -> None:
    adapter = VideoAdapter()
    assert adapter.frame_size(1280, 720) == (640, 360)  # 300k to start: 360p
    path = Path(adapter)
    path.run(30.0, None, 3_000_000, loss=0.0)  # the encoder sends what it is given
    assert adapter.frame_size(1280, 720) == (1280, 720)
    assert adapter.mode is VideoMode.FULL


def _vga_by_reports() -> Path:
    """The default adapter (REMB not followed) after 24 s of a clean path, 40 ms round trip."""
    adapter = VideoAdapter()
    adapter.frame_size(640, 480)
    path = Path(adapter)
    path.run(24.0, 600_000, None, loss=0.0, rtt=0.040)
    assert adapter.rung.name == "480p30"
    return path


def test_by_default_a_low_remb_alone_changes_nothing() -> None:
    path = _vga_by_reports()
    path.run(10.0, 600_000, 40_000, loss=0.0, rtt=0.040)
    assert not path.adapter.congested(path.now)
    assert path.adapter.rung.name == "480p30"
    assert path.adapter.remb_bps == 40_000  # recorded all the same


def test_a_longer_round_trip_that_stays_is_the_path_not_a_queue() -> None:
    """Wi-Fi to a mobile network: the round trip grows and stays; after the window it is
    the path's own, and the video climbs back."""
    path = _vga_by_reports()
    path.run(3.0, None, None, loss=0.0, rtt=0.200)
    assert path.adapter.congested(path.now)
    path.run(40.0, None, None, loss=0.0, rtt=0.200)
    assert not path.adapter.congested(path.now)
    assert path.adapter.rung.name == "480p30"


def test_a_queue_in_the_round_trip_cuts_and_steps_down() -> None:
    path = _vga_by_reports()
    path.run(1.0, 600_000, None, loss=0.0, rtt=0.300)  # 260 ms of queue at the bottleneck
    assert path.adapter.congested(path.now)
    rungs = []
    for _ in range(8):
        path.run(1.0, path.adapter.target_bps, None, loss=0.0, rtt=0.300)
        rungs.append(path.adapter.rung.name)
    assert path.adapter.target_bps < 300_000
    assert rungs[-1] in ("360p15", "240p10")
    # The queue drains: the estimate grows back and the rungs climb.
    path.run(60.0, None, None, loss=0.0, rtt=0.045)  # the encoder sends what it may
    assert path.adapter.rung.name == "480p30"


def test_losses_from_a_full_queue_step_down_without_any_remb() -> None:
    path = _vga_by_reports()
    for _ in range(6):
        path.run(1.0, path.adapter.target_bps, None, loss=0.25, rtt=0.040)
    assert path.adapter.congested(path.now)
    assert path.adapter.rung.name in ("360p15", "240p10", "120p5")
