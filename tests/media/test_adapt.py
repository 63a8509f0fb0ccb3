"""The video adaptation's rule (media/rtc/adapt.py) on a driven clock: what a path's REMB,
losses and send rate make of the rung, the encoder's target and what the viewer is told."""

from __future__ import annotations

from media.rtc.adapt import LADDER, RESERVE_BPS, VideoAdapter, VideoMode


class Path:
    """Drives an adapter as aiortc does: every half second the bytes sent so far, the
    receiver's REMB and (when given) a receiver report's loss."""

    def __init__(self, adapter: VideoAdapter) -> None:
        self.adapter = adapter
        self.now = 0.0
        self.sent = 0
        self.rungs: list[str] = []

    def run(self, seconds: float, send_bps: float, remb: int, loss: float | None = None) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += 0.5
            self.sent += int(send_bps / 8 * 0.5)
            self.adapter.on_sent(self.sent, self.now)
            self.adapter.on_remb(remb, self.now)
            if loss is not None:
                self.adapter.on_loss(loss, self.now)
            self.rungs.append(self.adapter.rung.name)

    def changes(self) -> list[str]:
        return [r for i, r in enumerate(self.rungs) if i == 0 or self.rungs[i - 1] != r]


def _vga() -> VideoAdapter:
    adapter = VideoAdapter()
    adapter.frame_size(640, 480)
    return adapter


def test_a_vga_camera_starts_full_at_its_own_size() -> None:
    adapter = _vga()
    assert adapter.frame_size(640, 480) == (640, 480)
    assert adapter.rung.name == "480p30"
    assert adapter.mode is VideoMode.FULL
    assert adapter.target_bps == 500_000


def test_a_congested_path_steps_down_after_a_second_and_caps_the_encoder() -> None:
    path = Path(_vga())
    path.run(3.0, 500_000, 1_000_000)
    path.run(0.5, 500_000, 230_000)  # under 1.2 x 500k sent: the receiver saw queues grow
    assert path.adapter.congested(path.now)
    assert path.adapter.rung.name == "480p30"  # not on one report
    path.run(1.0, 500_000, 230_000)
    # 230k less the data channels' reserve: 182k, over 360p15's floor of 160k.
    assert path.adapter.rung.name == "360p15"
    assert path.adapter.mode is VideoMode.REDUCED
    assert path.adapter.target_bps == 230_000 - RESERVE_BPS
    assert path.adapter.frame_size(640, 480) == (480, 360)


def test_a_collapse_steps_down_at_once_to_the_rung_that_fits() -> None:
    path = Path(_vga())
    path.run(3.0, 500_000, 1_000_000)
    path.run(0.5, 500_000, 140_000)  # 92k for video: under half of 480p30's floor
    assert path.adapter.rung.name == "240p10"
    assert path.adapter.frame_size(640, 480) == (320, 240)
    assert 64_000 <= path.adapter.target_bps <= 200_000


def test_a_still_picture_with_a_low_remb_is_not_congestion() -> None:
    """A REMB is at most 1.5x what arrives: a picture that needs 60 kbit/s gets a REMB
    near 100k on any path, and that says nothing about the path."""
    path = Path(_vga())
    path.run(10.0, 60_000, 100_000)
    assert not path.adapter.congested(path.now)
    assert path.changes() == ["480p30"]


def test_losses_cut_the_target_and_then_the_rung() -> None:
    path = Path(_vga())
    path.run(2.0, 500_000, 1_000_000, loss=0.0)
    assert path.adapter.target_bps == 900_000  # 480p30's cap: the path takes more
    targets = []
    for _ in range(6):
        path.run(0.5, 500_000, 1_000_000, loss=0.30)  # 30 % lost in each report
        targets.append(path.adapter.target_bps)
    assert targets == sorted(targets, reverse=True)
    assert targets[-1] < 300_000
    assert path.adapter.rung.name in ("360p15", "240p10")


def test_a_clean_path_steps_back_up_one_rung_at_a_time() -> None:
    path = Path(_vga())
    path.run(2.0, 500_000, 1_000_000)
    path.run(0.5, 500_000, 120_000)
    assert path.adapter.rung.name == "240p10"
    path.run(1.5, 150_000, 120_000)  # still congested: held
    assert path.adapter.rung.name == "240p10"
    path.run(20.0, 150_000, 1_200_000, loss=0.0)  # the path recovers
    assert path.changes() == ["480p30", "240p10", "360p15", "480p30"]  # never above 480


def test_a_step_up_taken_back_doubles_the_wait_for_the_next() -> None:
    path = Path(VideoAdapter(up_hold_s=2.0))
    path.adapter.frame_size(640, 480)
    path.run(2.0, 500_000, 1_000_000)
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
        path.run(0.5, 100_000, 2_000_000)
        assert path.now - start < 60, "never stepped up"
    return path.now - start


def test_paused_then_the_lowest_rung_is_tried_again() -> None:
    path = Path(_vga())
    path.run(2.0, 500_000, 1_000_000)
    path.run(0.5, 500_000, 60_000)  # 12k for video: nothing fits
    adapter = path.adapter
    assert adapter.mode is VideoMode.PAUSED
    assert adapter.target_bps == 0
    assert adapter.rung.fps == 0
    adapter.tick(path.now + 7.0)
    assert adapter.mode is VideoMode.PAUSED
    adapter.tick(path.now + 8.5)
    assert adapter.rung is LADDER[-2]
    assert adapter.mode is VideoMode.REDUCED


def test_a_720p_camera_can_use_the_top_rung() -> None:
    adapter = VideoAdapter()
    assert adapter.frame_size(1280, 720) == (854, 480)  # 500k to start cannot carry 720p
    path = Path(adapter)
    path.run(15.0, 480_000, 3_000_000)
    assert adapter.frame_size(1280, 720) == (1280, 720)
    assert adapter.mode is VideoMode.FULL
