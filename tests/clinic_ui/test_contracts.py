"""The browser speaks the contracts as Python defines them: the generated files are current,
and the browser's events reader and writer hold to the events schema (run in Node on the
same ES modules the page loads)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from clinic_ui import STATIC_DIR
from media.rtc.events import (
    MAX_HISTORY_REQUEST,
    Ack,
    EventError,
    Ping,
    WaveformHistoryRequest,
    encode_event,
    json_schema,
    parse_event,
)
from telemed import codegen
from tests.media.event_examples import EXAMPLES

NODE = shutil.which("node")


def test_the_generated_files_are_current() -> None:
    assert codegen.stale() == [], "run scripts/generate and commit the result"
    published = json.loads(codegen.EVENTS_SCHEMA.read_text(encoding="utf-8"))
    assert published == json_schema()
    assert published["version"] == 1


def _node(script: str, payload: object) -> object:
    if NODE is None:
        pytest.skip("no node here (scripts/bootstrap installs Node.js)")
    run = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=STATIC_DIR / "js",
    )
    return json.loads(run.stdout)


_READER = """
import { readFileSync } from "node:fs";
const ev = await import(process.cwd() + "/events.js");
const input = JSON.parse(readFileSync(0, "utf8"));
const out = { parsed: [], refused: [], acks: [] };
for (const text of input.good) {
  const m = ev.parseEvent(text);
  out.parsed.push(m);
  if (m.type === "hb") out.acks.push(ev.ackFor(m));
}
for (const text of input.bad) {
  try { ev.parseEvent(text); out.refused.push(null); }
  catch (e) { out.refused.push(e instanceof ev.EventError ? e.message : "not an EventError"); }
}
console.log(JSON.stringify(out));
"""

BAD = [
    '{"type":"limits","time":1,"limits":[{"code":"spo2","low":90}]}',
    '{"type":"alarm","id":"a","device":"d","condition":"x","priority":"urgent",'
    '"kind":"technical","source":"device","state":"active","started":1}',
    "{not json",
    "[1]",
    '{"type":"alarm-storm"}',
    '{"type":"numeric","code":"spo2"}',
    '{"type":"quality","channel":1,"score":7,"time":0}',
    '{"type":"hb","seq":-1,"at":0}',
    '{"type":"beats","channel":1,"times":[1,"x"]}',
    '{"type":"channel","channel":1,"code":"x","refid":"y","unit":"mV","sample_rate":0,'
    '"device":"d"}',
    '{"type":"numeric","code":"spo2","mdc":1,"refid":"r","loinc":7,"unit":"%","value":1,'
    '"time":1,"device":"d"}',
    '{"type":"waveform-history-request","channel":1,"first":0,"count":0}',
    '{"type":"waveform-history-request","channel":1,"first":-3,"count":10}',
    '{"type":"waveform-history","channel":1,"first":0,"rate":500,"request_first":0,'
    '"request_count":2001,"samples":[' + ",".join(["0.5"] * 2001) + "]}",
    '{"type":"waveform-history","channel":1,"first":0,"rate":500,"request_first":0,'
    '"request_count":1,"samples":[0.5,"x"]}',
    '{"type":"keep-frame","request":"k 1","camera":"ultrasound"}',
    '{"type":"keep-frame","request":"k1","camera":"Ultrasound"}',
    '{"type":"kept-frame","request":"k1","camera":"us","outcome":"lost"}',
    '{"type":"cameras","cameras":[{"name":"room","purpose":"room"}]}',
    '{"type":"pacs-find","request":"f1","study_date":"2026-12-01"}',
    '{"type":"pacs-find","request":"f1","patient_id":"A\\\\B"}',
    '{"type":"pacs-pull","request":"p1","study_instance_uid":"1.2.x"}',
    '{"type":"pacs-studies","request":"f1","studies":[{"patient_id":"x"}]}',
    '{"type":"latency-report","video":{"median_ms":-1,"p95_ms":1,"max_ms":1,"count":1}}',
    '{"type":"latency-report","waveform":{"median_ms":1,"p95_ms":1,"max_ms":1,"count":0}}',
    '{"type":"playout-delay","max_ms":1001,"reason":"loss"}',
    '{"type":"playout-delay","max_ms":-1,"reason":"loss"}',
    '{"type":"playout-delay","max_ms":100,"reason":"because"}',
    '{"type":"playout-delay","reason":"clear"}',
    '{"type":"video","mode":"full","time":1,"playout_delay_ms":5000}',
    '{"type":"latency-report","camera":"room","decode_ms":"fast"}',
]


def test_the_browser_reads_what_python_writes_and_refuses_what_python_refuses() -> None:
    good = [encode_event(m) for m in EXAMPLES]
    result = _node(_READER, {"good": good, "bad": BAD})
    assert isinstance(result, dict)
    # Every message Python writes is read as Python reads it.
    assert [parse_event(json.dumps(m)) for m in result["parsed"]] == EXAMPLES
    # Whatever Python refuses, the browser refuses too, each with a reason.
    for text, reason in zip(BAD, result["refused"], strict=True):
        with pytest.raises(EventError):
            parse_event(text)
        assert reason and reason != "not an EventError", (text, reason)
    # What the browser writes (the heartbeat's answer) is a valid message of ours.
    pings = [m for m in EXAMPLES if isinstance(m, Ping)]
    assert [parse_event(a) for a in result["acks"]] == [Ack(seq=p.seq, at=p.at) for p in pings]


def test_the_browser_ignores_fields_added_later_within_the_version() -> None:
    text = '{"type":"quality","channel":1,"score":0.5,"time":3.0,"added_later":{"x":1}}'
    result = _node(_READER, {"good": [text], "bad": []})
    assert isinstance(result, dict)
    assert result["parsed"][0]["score"] == 0.5


_WRITER = """
import { readFileSync } from "node:fs";
const ev = await import(process.cwd() + "/events.js");
const input = JSON.parse(readFileSync(0, "utf8"));
const out = { written: [], refused: [] };
for (const [channel, first, count] of input.good) {
  out.written.push(ev.historyRequest(channel, first, count));
}
for (const [channel, first, count] of input.bad) {
  try { ev.historyRequest(channel, first, count); out.refused.push(null); }
  catch (e) { out.refused.push(e instanceof ev.EventError ? e.message : "not an EventError"); }
}
console.log(JSON.stringify(out));
"""


def test_the_browser_writes_history_requests_python_reads() -> None:
    good = [[1, 0, 1], [4_000_000_000, 2**53 - 1, MAX_HISTORY_REQUEST]]
    bad: list[list[float]] = [
        [1, 0, 0],
        [1, -1, 5],
        [1, 0, MAX_HISTORY_REQUEST + 1],
        [-1, 0, 5],
        [1, 0.5, 5],
    ]
    result = _node(_WRITER, {"good": good, "bad": bad})
    assert isinstance(result, dict)
    read = [parse_event(text) for text in result["written"]]
    assert read == [WaveformHistoryRequest(channel=c, first=f, count=n) for c, f, n in good]
    refused = result["refused"]
    assert isinstance(refused, list)
    for (channel, first, count), reason in zip(bad, refused, strict=True):
        with pytest.raises(EventError):
            parse_event(
                json.dumps(
                    {
                        "type": "waveform-history-request",
                        "channel": channel,
                        "first": first,
                        "count": count,
                    }
                )
            )
        assert reason and reason != "not an EventError", (channel, first, count, reason)
