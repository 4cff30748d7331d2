import assert from "node:assert/strict";
import { test } from "node:test";

import { matchPresets, presetQuery } from "../../static/js/presets.mjs";

const PRESETS = [
  { title: "Code review", text: "Review this code:" },
  { title: "Translate to French", text: "In French:" },
  { title: "Summary", text: "Summarise for a code reviewer:" },
];

test("the list opens for a slash at the start of a one-line box", () => {
  assert.equal(presetQuery("/"), "");
  assert.equal(presetQuery("/rev"), "rev");
  assert.equal(presetQuery("hello /rev"), null);
  assert.equal(presetQuery("/rev\nmore"), null);
  assert.equal(presetQuery(""), null);
});

test("presets matching by title come before those matching by text only", () => {
  const titles = (query) => matchPresets(PRESETS, query).map((preset) => preset.title);
  assert.deepEqual(titles(""), ["Code review", "Translate to French", "Summary"]);
  assert.deepEqual(titles("CODE"), ["Code review", "Summary"]);
  assert.deepEqual(titles("to french"), ["Translate to French"]);
  assert.deepEqual(titles("nothing"), []);
});
