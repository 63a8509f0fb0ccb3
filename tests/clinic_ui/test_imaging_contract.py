"""The image panel speaks the room's imaging messages as Python defines them: the browser's
check (clinic_ui/static/js/imaging_messages.js, on the generated schema) accepts what the
server's schema accepts and refuses what it refuses; what the browser builds is a valid
``imaging.view``; its CT presets are the renderer's."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from pydantic import BaseModel, ValidationError

from clinic_ui import STATIC_DIR
from media.imaging.render import PRESETS
from signaling.errors import ProtocolError
from signaling.schema import (
    ImagingStored,
    ImagingView,
    parse_client_message,
    parse_server_message,
)

NODE = shutil.which("node")
UID = "1.2.392.200036.9116.2.6.1.48"

_SCRIPT = """
import { readFileSync } from "node:fs";
const m = await import(process.cwd() + "/imaging_messages.js");
const math = await import(process.cwd() + "/imaging_math.js");
const input = JSON.parse(readFileSync(0, "utf8"));
const verdicts = input.messages.map((message) => {
  try { m.checkImagingMessage(message); return null; }
  catch (e) {
    return e instanceof m.ImagingMessageError ? e.message : "not an ImagingMessageError";
  }
});
const built = input.views.map((v) => m.viewMessage(v));
console.log(JSON.stringify({ verdicts, built, presets: math.CT_PRESETS }));
"""

VIEW = {"type": "imaging.view", "study": UID, "series": UID + ".1", "sop": UID + ".1.1"}
STORED = {
    "type": "imaging.stored",
    "consultation_id": "c-1",
    "study": UID,
    "series": UID + ".1",
    "sop": UID + ".1.1",
    "modality": "US",
    "frames": 30,
}
MESSAGES: list[object] = [
    VIEW,
    {**VIEW, "frame": 7, "window": [40, 400], "pointer": [12.5, -3], "from": "p-1"},
    {**VIEW, "window": None, "pointer": None},
    {**VIEW, "window": [-1e6, 1e6]},
    {**VIEW, "study": "1.2.03"},
    {**VIEW, "study": "1..2"},
    {**VIEW, "sop": ""},
    {**VIEW, "series": "1." + "2" * 63},
    {**VIEW, "frame": 0},
    {**VIEW, "frame": 65_536},
    {**VIEW, "frame": 2.5},
    {**VIEW, "frame": "2"},
    {**VIEW, "window": [40, 0]},
    {**VIEW, "window": [40, -5]},
    {**VIEW, "window": [1e6 + 1, 5]},
    {**VIEW, "window": [40]},
    {**VIEW, "window": [40, 400, 1]},
    {**VIEW, "window": "40,400"},
    {**VIEW, "pointer": [1, "2"]},
    {**VIEW, "pointer": [2e6, 0]},
    {**VIEW, "from": "not a peer id"},
    {**VIEW, "colour": "red"},
    {"type": "imaging.view", "study": UID, "series": UID},
    STORED,
    {**STORED, "frames": "30"},
    {**STORED, "consultation_id": ""},
    {**STORED, "modality": 3},
    {"type": "imaging.deleted", "sop": UID},
    [VIEW],
    "imaging.view",
]


def _python_accepts(message: object) -> bool:
    """The schema's verdict on the message as JSON, types taken strictly (the browser does
    not read "2" as 2, where the server's lax parsing would)."""
    kind = message.get("type") if isinstance(message, dict) else None
    models: dict[str, type[BaseModel]] = {
        "imaging.view": ImagingView,
        "imaging.stored": ImagingStored,
    }
    model = models.get(str(kind))
    if model is None:
        return False
    try:
        model.model_validate_json(json.dumps(message), strict=True)
    except ValidationError:
        return False
    return True


def _server_parses(message: object) -> bool:
    """What the server's own parser makes of it (a client's view, a server's stored)."""
    text = json.dumps(message)
    kind = message.get("type") if isinstance(message, dict) else None
    parse = parse_server_message if kind == "imaging.stored" else parse_client_message
    try:
        parse(text)
    except ProtocolError:
        return False
    return True


def _run(payload: object) -> dict[str, object]:
    if NODE is None:
        pytest.skip("no node here (scripts/bootstrap installs Node.js)")
    run = subprocess.run(
        [NODE, "--input-type=module", "-e", _SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=STATIC_DIR / "js",
    )
    result = json.loads(run.stdout)
    assert isinstance(result, dict)
    return result


def test_the_browser_checks_imaging_messages_as_the_server_does() -> None:
    views = [
        {"study": UID, "series": UID, "sop": UID},
        {"study": UID, "series": UID, "sop": UID, "frame": 3, "window": [40.123, 399.999]},
        {"study": UID, "series": UID, "sop": UID, "pointer": [100.04, 0.06]},
    ]
    result = _run({"messages": MESSAGES, "views": views})
    verdicts = result["verdicts"]
    assert isinstance(verdicts, list)
    for message, verdict in zip(MESSAGES, verdicts, strict=True):
        accepted = _python_accepts(message)
        assert (verdict is None) == accepted, (message, verdict)
        assert verdict != "not an ImagingMessageError"
        # Nothing the browser takes is refused by the server's parser.
        assert verdict is not None or _server_parses(message), message
    built = result["built"]
    assert isinstance(built, list)
    parsed = [ImagingView.model_validate_json(json.dumps(b), strict=True) for b in built]
    assert parsed[1].window == (40.12, 400.0)
    assert parsed[2].pointer == (100.0, 0.1)
    assert all(b["type"] == "imaging.view" for b in built)


def test_the_browser_presets_are_the_renderers() -> None:
    result = _run({"messages": [], "views": []})
    presets = result["presets"]
    assert isinstance(presets, dict)
    assert {k: tuple(v) for k, v in presets.items()} == dict(PRESETS)
