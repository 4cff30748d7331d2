import assert from "node:assert/strict";
import { test } from "node:test";

import { sendOptions, splitTarget } from "../../static/js/options.mjs";

test("the model picker's value splits into provider and model", () => {
  assert.deepEqual(splitTarget(""), [null, null]);
  assert.deepEqual(splitTarget("fake"), ["fake", null]);
  assert.deepEqual(splitTarget("fake:gpt-a"), ["fake", "gpt-a"]);
  // Model names may hold colons themselves (e.g. "llama3:8b"): only the first one separates.
  assert.deepEqual(splitTarget("local:llama3:8b"), ["local", "llama3:8b"]);
  assert.deepEqual(splitTarget(":gpt-a"), [null, "gpt-a"]);
});

test("empty number fields are left out of the options; the system prompt is always sent", () => {
  assert.deepEqual(sendOptions({ temperature: "", maxTokens: "", system: "" }), { system: "" });
  assert.deepEqual(sendOptions({ temperature: "0.5", maxTokens: "128", system: "Be brief." }), {
    temperature: 0.5,
    max_tokens: 128,
    system: "Be brief.",
  });
  assert.deepEqual(sendOptions({ temperature: "0", maxTokens: "", system: "" }), { temperature: 0, system: "" });
});
