import assert from "node:assert/strict";
import { test } from "node:test";

import { refusal } from "../../static/js/ui.mjs";

const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

test("a refused request shows the server's sentence from its one JSON error shape", async () => {
  const response = json(400, { error: { code: "invalid", message: "This field is required." } });
  assert.equal(await refusal(response), "This field is required.");
});

test("a body that is not the error shape is never shown: a fixed sentence instead", async () => {
  const page = new Response("<html><h1>Bad Gateway</h1></html>", { status: 502 });
  assert.equal(await refusal(page), "The server answered 502. Try again in a moment.");
  const other = json(400, { errors: { title: [{ message: "old shape" }] } });
  assert.equal(await refusal(other), "The server answered 400. Try again in a moment.");
});

test("a conversation that is gone is said so", async () => {
  assert.equal(await refusal(new Response("", { status: 404 })), "This conversation no longer exists.");
});
