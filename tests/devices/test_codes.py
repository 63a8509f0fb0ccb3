"""The code table (issue 11: invasive pressures and cardiac output in the data model with
their MDC and LOINC codes): every LOINC code well formed, with LOINC's own check digit (a
digit mistyped in a code is caught here), and the codes the ICU profiles pair them with."""

from __future__ import annotations

import re

import pytest

from devices import codes


def _loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit: the digits in odd places from the right, read as one
    number and doubled, written after those in even places; 10 less the digit sum's last
    digit (0 for 0)."""
    odd = number[::-1][0::2][::-1]
    even = number[::-1][1::2][::-1]
    total = sum(int(d) for d in even + str(int(odd) * 2))
    return (10 - total % 10) % 10


@pytest.mark.parametrize("known", ["8480-6", "8867-4", "59408-5", "8310-5", "9279-1"])
def test_the_check_digit_of_known_codes(known: str) -> None:
    number, digit = known.split("-")
    assert _loinc_check_digit(number) == int(digit)
    assert _loinc_check_digit(number) != (int(digit) + 1) % 10


@pytest.mark.parametrize("code", codes.ALL_CODES, ids=lambda c: c.key)
def test_every_loinc_code_is_well_formed(code: codes.VitalCode) -> None:
    if code.loinc is None:
        return
    match = re.fullmatch(r"(\d{1,7})-(\d)", code.loinc)
    assert match is not None, code.loinc
    assert _loinc_check_digit(match[1]) == int(match[2]), code.loinc


def test_invasive_pressures_and_cardiac_output_carry_their_codes() -> None:
    table = {c.key: (c.mdc, c.loinc, c.ucum) for c in codes.ALL_CODES}
    assert table["abp_sys"] == (150037, "76215-3", "mm[Hg]")
    assert table["abp_dia"] == (150038, "76213-8", "mm[Hg]")
    assert table["abp_mean"] == (150039, "76214-6", "mm[Hg]")
    assert table["pap_sys"] == (150045, "8440-0", "mm[Hg]")
    assert table["pap_dia"] == (150046, "8385-7", "mm[Hg]")
    assert table["pap_mean"] == (150047, "8414-5", "mm[Hg]")
    assert table["cvp_mean"] == (150087, "60985-9", "mm[Hg]")
    assert table["icp_mean"] == (153611, "60956-0", "mm[Hg]")
    assert table["cardiac_output"] == (150276, "8741-1", "L/min")
    assert len({c.loinc for c in codes.ALL_CODES if c.loinc}) == len(
        [c for c in codes.ALL_CODES if c.loinc]
    )  # no code twice
