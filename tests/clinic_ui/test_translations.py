"""The app's three languages say the same things: same keys, same placeholders, and every key
the page and the code use exists."""

from __future__ import annotations

import json
import re

import pytest

from clinic_ui import STATIC_DIR

LANGUAGES = ("en", "ja", "ko")


def _strings(lang: str) -> dict[str, str]:
    data = json.loads((STATIC_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("lang", ["ja", "ko"])
def test_each_language_has_every_key_with_the_same_placeholders(lang: str) -> None:
    english, other = _strings("en"), _strings(lang)
    assert set(other) == set(english)
    for key, text in english.items():
        assert set(re.findall(r"\{(\w+)\}", other[key])) == set(re.findall(r"\{(\w+)\}", text)), key
        assert other[key].strip(), key


def test_every_key_used_by_the_page_and_the_code_exists() -> None:
    keys = set(_strings("en"))
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', html))
    code = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (STATIC_DIR / "js").glob("*.js")
        if p.name != "i18n.js"  # where t() is defined, not used
    )
    used |= set(re.findall(r'\bt\("([a-zA-Z_.]+)"', code))
    assert used, "no keys found: the patterns no longer match the sources"
    assert used - keys == set()
    # Keys built at run time: vital signs, device states, roles, states, sites.
    for prefix, names in {
        "vital": ["heart_rate", "spo2", "pulse_rate", "ecg_ii", "pleth", "nibp_sys"],
        "device": ["connecting", "connected", "searching", "probe_off", "silent", "disconnected"],
        "role": ["doctor", "technician", "engineer", "admin", "gateway"],
        "state": ["requested", "active", "closed", "cancelled"],
        "site": ["koriyama", "wonju"],
        "room.link": ["waiting", "connecting", "connected", "lost"],
    }.items():
        for name in names:
            assert f"{prefix}.{name}" in keys
