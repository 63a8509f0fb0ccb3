"""Hostile values inside valid pacs-find and pacs-pull messages, asked of a real PACS
(Orthanc) through the room's answering task: every one is answered with a message the
viewer can read, and the task goes on. And whatever a PACS answers, the pacs-studies
message built from it is one the contract accepts, within one message's size."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.dicom.pacs import PacsSettings, StudyMatch
from media.rtc.events import (
    MAX_EVENT_BYTES,
    MAX_PACS_STUDIES,
    PacsFind,
    PacsPull,
    PacsPulled,
    PacsStudies,
    parse_event,
)
from runtime.clock import ManualClock
from telemed.gateway.pacs_room import (
    BAD_ACCESSION,
    NOT_ASCII,
    REQUESTS_PER_S,
    PacsRoom,
    studies_text,
)
from tests.devices.dicom.orthanc import orthanc
from tests.fuzzing import budget
from tests.telemed.pacs_link import answering, clinician, linked, pacs_imaging

RUNS = budget(40)
#: Characters a hostile or careless query is made of: DICOM wildcards and separators,
#: quotes, SQL and format characters, the patients' own scripts, astral characters.
ALPHABET = "*?^=%_'\";--/ \tAZaz09.김민지山田太郎やまだ𝕏\u200b\ufeff\u0130"


ASCII = "".join(c for c in ALPHABET if c.isascii())


def _text(rng: random.Random) -> str:
    length = rng.choice([0, 1, 2, 8, 16, 17, 63, 64])
    alphabet = rng.choice([ALPHABET, ASCII, ASCII])
    return "".join(rng.choice(alphabet) for _ in range(length)).replace("\t", " ")


def _message(rng: random.Random, k: int) -> PacsFind | PacsPull:
    if rng.random() < 0.3:
        uid = ".".join(str(rng.choice([0, 1, 99, 2**64])) for _ in range(rng.randint(1, 8)))
        return PacsPull(request=f"p-{k}", study_instance_uid=uid[:64].strip(".") or "1")
    date = rng.choice(["", "20261201", "20261201-", "-20261201", "19000101-29991231", "-"])
    return PacsFind(
        request=f"f-{k}", patient_id=_text(rng), accession_number=_text(rng), study_date=date
    )


@pytest.mark.slow  # Orthanc, and a WebRTC link
async def test_hostile_queries_are_each_answered_and_the_task_goes_on(tmp_path: Path) -> None:
    rng = random.Random(13)
    clock = ManualClock()
    async with orthanc(tmp_path / "pacs") as server, linked() as link:
        pacs = PacsSettings("127.0.0.1", server.dicom_port, server.ae_title, timeout_s=10)
        imaging = pacs_imaging(tmp_path / "gateway", pacs)
        room = PacsRoom(imaging, lambda: "wonju", lambda _: link.gateway, clock=clock)
        async with answering(room, imaging):
            searched = 0
            for k in range(RUNS):
                clock.advance(1 / REQUESTS_PER_S)
                message = _message(rng, k)
                room.request(clinician("wonju"), message)
                answer = await link.answer(message.request)
                parsed = parse_event(json.dumps(answer))
                if isinstance(message, PacsFind):
                    assert isinstance(parsed, PacsStudies)
                    query = message.patient_id + message.accession_number
                    if not query.isascii():
                        assert parsed.error == NOT_ASCII
                    elif len(message.accession_number) > 16:  # a DICOM SH
                        assert parsed.error == BAD_ACCESSION
                    else:
                        assert parsed.error is None, parsed.error  # Orthanc answers the rest
                        searched += 1
                else:
                    assert isinstance(parsed, PacsPulled)
                    # Nothing of these is in the PACS: none pulled, and said.
                    assert parsed.completed == 0
            assert room.answered + room.refused == RUNS
            assert searched >= RUNS // 8  # the generator reaches the PACS's matching too


_any_text = st.text(max_size=400)


@settings(max_examples=200, deadline=None)
@given(
    matches=st.lists(
        st.builds(
            StudyMatch,
            study_instance_uid=st.one_of(_any_text, st.from_regex(r"[0-9.]{1,64}", fullmatch=True)),
            patient_id=_any_text,
            patient_name=_any_text,
            study_date=_any_text,
            description=_any_text,
            modalities=st.lists(_any_text, max_size=40).map(tuple),
            instances=st.one_of(st.none(), st.integers()),
        ),
        max_size=80,
    )
)
def test_whatever_a_pacs_answers_is_a_valid_bounded_message(matches: list[StudyMatch]) -> None:
    text = studies_text("f-1", matches)
    assert len(text.encode()) <= MAX_EVENT_BYTES
    answer = parse_event(text)
    assert isinstance(answer, PacsStudies)
    assert len(answer.studies) <= MAX_PACS_STUDIES
    usable = [m for m in matches if m.study_instance_uid.strip()]
    if len(answer.studies) < min(len(usable), MAX_PACS_STUDIES):
        assert answer.truncated or any(len(m.study_instance_uid.strip()) > 64 for m in usable)
