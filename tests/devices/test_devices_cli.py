"""``telemed devices decode`` and ``read`` (issue 11): what a capture holds is said, nothing
decoded is a failure, the common hex dump forms are read (offsets never taken as data),
``--json`` is JSON, and the HL7 listener says where it listens."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices import codes
from devices.export import to_dict
from devices.hexdump import load_text_capture, parse_hexdump
from devices.model import Observation, Quality
from devices.protocols import cms50
from devices.protocols.hl7_pcd import Numeric, build_oru
from devices.protocols.mllp import frame
from telemed.devices_cli import add_parser, decode_file, simulate

STREAM = b"".join(cms50.encode_live(cms50.LiveSample(p, 70, 97, 2.5)) for p in range(60))


def _decode(
    protocol: str, path: Path, capsys: pytest.CaptureFixture[str], as_json: bool = False
) -> tuple[int, str, str]:
    status = decode_file(protocol, path, as_json)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_host_side_intellivue_log_is_said_to_hold_host_requests_only(
    captures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = captures / "philips-intellivue-mib-rs232" / "MPRawoutput1.raw"
    status, out, err = _decode("intellivue", log, capsys)
    assert status == 3  # nothing decoded: not a clean file
    assert out == ""
    assert "malformed message" not in err
    assert "only a host's requests (PC to monitor: 182)" in err


def test_text_with_nothing_decodable_fails_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the monitor was moved to bed 4 at noon\n")
    status, _, err = _decode("intellivue", notes, capsys)
    assert status == 3
    assert "nothing decoded: the file holds nothing recognisable" in err


def test_the_wireshark_hex_dump_is_read_without_its_offsets(
    captures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = captures / "philips-intellivue-lan" / "my_assoc.hexdump.txt"
    data, form = load_text_capture(dump.read_bytes())
    assert form == "Wireshark/hexdump -C hex dump"
    assert len(data) == 460  # 14 Ethernet + 0x01be IP bytes, no offsets among them
    assert data[:6] == bytes.fromhex("01005e00173f")
    status, _, err = _decode("intellivue", dump, capsys)
    assert status == 3
    assert "UDP datagram from port 24005 to 24005" in err


def _tool(*argv: str, data: bytes) -> str:
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout.decode()


@pytest.mark.parametrize(
    ("argv", "form"),
    [
        (["xxd"], "xxd hex dump"),
        (["xxd", "-g1", "-c", "24"], "xxd hex dump"),
        (["od", "-t", "x1"], "od hex dump"),
        (["od", "-x"], "od hex dump"),
        (["od", "-A", "x", "-t", "x1z"], "Wireshark/hexdump -C hex dump"),
        (["hexdump", "-C"], "Wireshark/hexdump -C hex dump"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
@pytest.mark.parametrize("length", [len(STREAM), len(STREAM) - 1])  # odd: od -x pads a word
def test_hex_dumps_of_the_tools_give_back_the_bytes(
    argv: list[str], form: str, length: int
) -> None:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    data = STREAM[:length]
    parsed = parse_hexdump(_tool(*argv, data=data))
    assert parsed == (data, form)


def test_a_tcpdump_x_dump_gives_back_the_bytes() -> None:
    text = (
        "12:00:00.000000 IP 10.0.0.2.2575 > 10.0.0.1.40000: Flags [P.], length 3\n"
        "\t0x0000:  4500 0034 1c46 4000 4006 b1e6 ac10 0a63  E..4.F@.@......c\n"
        "\t0x0010:  ac10 0a0c 0b41 42                        .....AB\n"
    )
    data = bytes.fromhex("450000341c4640004006b1e6ac100a63ac100a0c0b4142")
    assert parse_hexdump(text) == (data, "tcpdump -X hex dump")


def test_a_hex_dump_of_a_capture_decodes_like_the_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("xxd") is None:
        pytest.skip("xxd is not installed")
    raw, dumped = tmp_path / "raw.bin", tmp_path / "dump.txt"
    raw.write_bytes(STREAM)
    dumped.write_text(_tool("xxd", data=STREAM))
    first = _decode("cms50", raw, capsys)
    second = _decode("cms50", dumped, capsys)
    assert first[:2] == second[:2] == (0, first[1])
    assert "60 frames" in second[2] and "read as xxd hex dump" in second[2]


def test_json_output_is_json_whatever_the_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = build_oru([Numeric(codes.SPO2, 97), Numeric(codes.HEART_RATE, 72)], [], 1.0)
    message = message.replace("|97|", "|NaN|").replace("|72|", "|1e999|")
    capture = tmp_path / "hl7.bin"
    capture.write_bytes(frame(message))
    status, out, _ = _decode("hl7", capture, capsys, as_json=True)
    assert status == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    rows = [json.loads(line, parse_constant=refuse) for line in out.splitlines()]
    values = [(r["code"], r["value"], r["quality"]) for r in rows if r["kind"] == "observation"]
    assert values == [("spo2", None, ["invalid"]), ("heart_rate", None, ["invalid"])]


async def test_the_hl7_listener_says_where_it_listens() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        "devices",
        "read",
        "hl7",
        "0",
        "--seconds",
        "30",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(20):
            line = (await process.stderr.readline()).decode()
        assert line.startswith("listening for HL7 over MLLP on 0.0.0.0:")
        assert int(line.rsplit(":", 1)[1]) > 0
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_value_is_no_value_with_a_flag_wherever_it_comes_from(value: float) -> None:
    observation = Observation(codes.TEMPERATURE, value, "d", 1.0, value, Quality.ARTIFACT)
    assert observation.value is None and observation.device_time is None
    assert observation.quality == Quality.ARTIFACT | Quality.INVALID
    row = to_dict(observation)
    json.dumps(row, allow_nan=False)
    assert row["value"] is None and row["quality"] == ["invalid", "artifact"]


@pytest.mark.slow  # two processes start, then 4 s of reading
@pytest.mark.cpu  # the values read are checked, not when they came
async def test_the_intellivue_simulator_set_to_kpa_and_degf_is_read_in_mmhg_and_cel() -> None:
    """``simulate intellivue --monitor-setup kpa,degf,invasive`` read by ``read --json``:
    the values in their canonical units, converted (118 mmHg is sent as 15.7 kPa)."""
    simulator = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "telemed", "devices", "simulate", "intellivue"),
        *("--monitor-setup", "kpa,degf,invasive"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert simulator.stdout is not None
        async with asyncio.timeout(20):
            path = (await simulator.stdout.readline()).decode().strip()
        reader = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "telemed", "devices", "read", "intellivue", path),
            *("--json", "--seconds", "4"),
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, _ = await reader.communicate()
    finally:
        simulator.terminate()
        await simulator.wait()
    values = {
        e["code"]: (e["value"], e["unit"])
        for e in map(json.loads, out.decode().splitlines())
        if e.get("kind") == "observation"
    }
    assert values["nibp_sys"] == (pytest.approx(118, abs=0.4), "mm[Hg]")
    assert values["temperature"] == (pytest.approx(36.8, abs=0.03), "Cel")
    assert values["abp_sys"] == (pytest.approx(121, abs=0.4), "mm[Hg]")
    assert values["cvp_mean"] == (pytest.approx(8, abs=0.4), "mm[Hg]")


def _simulate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["devices", "simulate", *argv])


async def test_a_monitor_setup_for_a_device_that_is_no_monitor_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await simulate(_simulate_args("cms50", "--monitor-setup", "kpa")) == 2
    assert "--monitor-setup: cms50 is not a monitor" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        _simulate_args("hl7", "--monitor-setup", "psi")
    assert refused.value.code == 2
    assert "unknown monitor setting(s) psi" in capsys.readouterr().err
