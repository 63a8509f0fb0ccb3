"""The bedside's cameras: ``--camera [NAME=]SPEC[:PURPOSE]`` and the settings, and a real
gateway with a room camera and a synthetic ultrasound sending both to an aiortc doctor through
the real server, each on its own transceiver, named by a ``cameras`` event."""

from __future__ import annotations

import argparse
import asyncio

import av
import numpy as np
import pytest
from pydantic import SecretStr

from media.video.stamp import read_stamp
from runtime.queues import DropOldestQueue
from telemed.gateway.cameras import CameraSpec, parse_cameras
from telemed.gateway_cli import config_from
from telemed.settings import GatewayOptions, Settings, SettingsError
from tests.e2e.bedside import bedside
from tests.e2e.doctor import active_consultation, gateway_in, tasks, until
from tests.helpers import LiveServer

ULTRASOUND = CameraSpec("ultrasound", "synthetic", "diagnostic")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", CameraSpec("room", "0", "room")),
        ("synthetic", CameraSpec("room", "synthetic", "room")),
        ("room=0", CameraSpec("room", "0", "room")),
        ("ultrasound=/dev/video2", CameraSpec("ultrasound", "/dev/video2", "diagnostic")),
        ("endo-1=/dev/video4:diagnostic", CameraSpec("endo-1", "/dev/video4", "diagnostic")),
        ("bed=2:room", CameraSpec("bed", "2", "room")),
        ("synthetic:room", CameraSpec("room", "synthetic", "room")),
        # A URL's query has "=" too, but nothing before it is a name: the room camera.
        ("rtsp://cam.local/s?x=1", CameraSpec("room", "rtsp://cam.local/s?x=1", "room")),
        ("http://10.0.0.5:8080/video", CameraSpec("room", "http://10.0.0.5:8080/video", "room")),
    ],
)
def test_camera_options_parse(text: str, expected: CameraSpec) -> None:
    assert CameraSpec.parse(text) == expected


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        (["ultrasound="], "no source"),
        (["synthetic:diagnostic"], "needs a name"),
        (["0", "room=1"], "room named twice"),
        ([f"c{k}=synthetic" for k in range(9)], "at most 8"),
    ],
)
def test_bad_camera_options_say_what_is_wrong(texts: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_cameras(texts)


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {"server": None, "name": None, "key_file": None, "site": None}
    values |= {"device": [], "camera": None, "size": None, "consultation": None}
    return argparse.Namespace(**(values | overrides))


def _settings(camera: str | None = None, cameras: tuple[str, ...] = ()) -> Settings:
    options = GatewayOptions(
        name="bed-1", key=SecretStr("k"), site="wonju", camera=camera, cameras=cameras
    )
    return Settings(gateway=options)


def test_cameras_come_from_the_flags_else_the_settings() -> None:
    settings = _settings(camera="0", cameras=("ultrasound=/dev/video2",))
    from_settings = config_from(_args(), settings).all_cameras()
    assert from_settings == (
        CameraSpec("room", "0", "room"),
        CameraSpec("ultrasound", "/dev/video2", "diagnostic"),
    )
    flags = config_from(_args(camera=["synthetic", "us=synthetic"]), settings).all_cameras()
    assert flags == (
        CameraSpec("room", "synthetic", "room"),
        CameraSpec("us", "synthetic", "diagnostic"),
    )
    assert config_from(_args(), _settings()).all_cameras() == ()
    with pytest.raises(SettingsError, match="named twice"):
        config_from(_args(camera=["us=0", "us=1"]), settings)


@pytest.mark.slow  # a real server, gateway and aiortc doctor
async def test_two_cameras_reach_the_doctor_as_two_labelled_tracks(server: LiveServer) -> None:
    tech, doctor, row = await active_consultation(server)
    try:
        async with (
            bedside(server, cameras=(ULTRASOUND,)) as gateway,
            tasks(doctor.answer_offers()),
        ):
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            await until(lambda: any(m["type"] == "cameras" for m in doctor.messages), doctor)
            [told] = [m for m in doctor.messages if m["type"] == "cameras"]
            assert [(c["name"], c["purpose"]) for c in told["cameras"]] == [
                ("room", "room"),
                ("ultrasound", "diagnostic"),
            ]
            assert [(c["width"], c["height"]) for c in told["cameras"]] == [(320, 240)] * 2
            # The mids are the gateway's transceivers' on this connection, and the doctor
            # receives a track on each.
            assert gateway.peers is not None and doctor.client.peer_id is not None
            sent = gateway.peers.media_of(doctor.client.peer_id)
            assert sent is not None
            mids = [c["mid"] for c in told["cameras"]]
            assert sent.video_mids() == mids and len(set(mids)) == 2
            media = doctor.media
            assert media is not None
            assert sorted(media.video_frames_by_mid) == sorted(mids)
            room, ultrasound = [await _stamped(media.video_frames_by_mid[mid]) for mid in mids]
            assert _spread(ultrasound) < 12 < _spread(room)  # grey sector vs colour ramps
    finally:
        await doctor.client.close()
        await tech.close()


def _spread(image: np.ndarray) -> float:
    return float(np.ptp(image[120:, 100:].astype(int), axis=2).mean())


async def _stamped(frames: DropOldestQueue[av.VideoFrame]) -> np.ndarray:
    async with asyncio.timeout(20):
        while True:
            frame = await frames.get()
            image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            if read_stamp(image) is not None:
                return image
