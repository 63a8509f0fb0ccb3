// The PACS section's pure parts (clinic_ui/static/js/pacs.js): a name as the PACS gives it,
// the date input as a DICOM date, and the query text the events contract allows.
import assert from "node:assert/strict";
import { test } from "node:test";

import { dicomDate, pacsName, queryText } from "../../clinic_ui/static/js/pacs.js";

test("a Japanese or Korean name shows its own script first, the alphabetic after it", () => {
  assert.equal(pacsName("Kim^Minji=김^민지"), "김 민지 (Kim Minji)");
  assert.equal(pacsName("Yamada^Taro=山田^太郎=やまだ^たろう"), "山田 太郎 (Yamada Taro / やまだ たろう)");
  assert.equal(pacsName("Doe^Jane"), "Doe Jane");
  assert.equal(pacsName(""), "");
  assert.equal(pacsName(undefined), "");
});

test("the date input becomes a DICOM date, anything else none", () => {
  assert.equal(dicomDate("2026-12-01"), "20261201");
  assert.equal(dicomDate(""), "");
  assert.equal(dicomDate("12/01/2026"), "");
});

test("query text: printable ASCII, no backslash, within its length", () => {
  assert.ok(queryText("KR-0042*"));
  assert.ok(queryText("A".repeat(64)));
  assert.ok(!queryText("A".repeat(65)));
  assert.ok(queryText("A".repeat(16), 16));
  assert.ok(!queryText("A".repeat(17), 16));
  assert.ok(!queryText("김민지"));
  assert.ok(!queryText("A\\B"));
  assert.ok(!queryText("A\nB"));
  assert.ok(queryText(""));
});
