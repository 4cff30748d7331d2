import assert from "node:assert/strict";
import { test } from "node:test";

import { costText, durationText, usageText } from "../../static/js/usage.mjs";

test("a cost is rounded half up to a hundredth of a cent, as the server rounds it", () => {
  const usage = { prompt_tokens: 1000, completion_tokens: 500 };
  // 1000 × $0.15/M + 500 × $0.60/M = $0.00045 -> $0.0005 (half up)
  assert.equal(costText(usage, ["0.15", "0.60"]), "$0.0005");
  assert.equal(costText({ prompt_tokens: 1000, completion_tokens: 0 }, ["0.1", "0"]), "$0.0001");
  assert.equal(costText({ prompt_tokens: 2_000_000, completion_tokens: 1_000_000 }, ["2.5", "10"]),
    "$15.0000");
  assert.equal(costText({ prompt_tokens: 400_000_000, completion_tokens: 0 }, ["10", "0"]),
    "$4,000.0000");
});

test("a tiny cost above zero is never shown as zero; no price shows nothing", () => {
  assert.equal(costText({ prompt_tokens: 10, completion_tokens: 0 }, ["0.15", "0"]), "< $0.0001");
  assert.equal(costText({ prompt_tokens: 0, completion_tokens: 0 }, ["1", "1"]), "$0.0000");
  assert.equal(costText({ prompt_tokens: 5, completion_tokens: 5 }, undefined), "");
});

test("durations are seconds with one decimal, then minutes and seconds", () => {
  assert.equal(durationText(1234), "1.2 s");
  assert.equal(durationText(65_400), "1 min 5 s");
  assert.equal(durationText(null), "");
});

test("the usage line joins tokens, time and cost", () => {
  const frame = {
    model: "m",
    usage: { prompt_tokens: 12, completion_tokens: 34 },
    duration_ms: 2500,
  };
  assert.equal(usageText(frame, {}), "12 prompt + 34 answer tokens · 2.5 s");
  assert.equal(usageText(frame, { m: ["1000", "1000"] }), "12 prompt + 34 answer tokens · 2.5 s · $0.0460");
  assert.equal(usageText({ model: "m", usage: null, duration_ms: null }, {}), "");
});
