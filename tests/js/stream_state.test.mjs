import assert from "node:assert/strict";
import { test } from "node:test";

import {
  deltaAction,
  outboxMaySend,
  outboxNotice,
  reconnectDelay,
  renderDelay,
  renderInterval,
} from "../../static/js/stream_state.mjs";

test("deltas apply in order, once, and a gap asks for a snapshot", () => {
  const stream = { seq: 3 };
  assert.equal(deltaAction(stream, 4), "append");
  assert.equal(deltaAction(stream, 3), "ignore");
  assert.equal(deltaAction(stream, 1), "ignore");
  assert.equal(deltaAction(stream, 6), "resync");
  assert.equal(deltaAction(null, 1), "ignore");
  // After a gap the stream waits for its snapshot: nothing applies meanwhile.
  assert.equal(deltaAction({ seq: Infinity }, 7), "ignore");
});

test("the text so far is rendered at most once per interval, one request at a time", () => {
  const idle = { timer: null, asking: false, askedAt: 0 };
  assert.equal(renderDelay(idle, 10_000, 300), 0);
  assert.equal(renderDelay({ ...idle, askedAt: 9_900 }, 10_000, 300), 200);
  assert.equal(renderDelay({ ...idle, askedAt: 9_000 }, 10_000, 300), 0);
  assert.equal(renderDelay({ ...idle, asking: true }, 10_000, 300), null);
  assert.equal(renderDelay({ ...idle, timer: 1 }, 10_000, 300), null);
});

test("the outbox sends one request at a time, only when open and no answer runs", () => {
  const ready = { waiting: 2, open: true, sending: null, syncing: null, streaming: 0 };
  assert.equal(outboxMaySend(ready), true);
  assert.equal(outboxMaySend({ ...ready, waiting: 0 }), false);
  assert.equal(outboxMaySend({ ...ready, open: false }), false);
  assert.equal(outboxMaySend({ ...ready, sending: "r1" }), false);
  assert.equal(outboxMaySend({ ...ready, syncing: "r2" }), false);
  assert.equal(outboxMaySend({ ...ready, streaming: 1 }), false);
});

test("the composer says how many messages wait for the connection", () => {
  assert.equal(outboxNotice(0, false), "");
  assert.equal(outboxNotice(2, true), "");
  assert.equal(outboxNotice(1, false), "Not connected. Your message will be sent when the connection is back.");
  assert.equal(outboxNotice(3, false), "Not connected. 3 messages will be sent when the connection is back.");
});

test("a longer answer is rendered less often, never less than every 3 s", () => {
  assert.equal(renderInterval(0, 300), 300);
  assert.equal(renderInterval(999, 300), 300);
  assert.equal(renderInterval(20_000, 300), 1_500);
  assert.equal(renderInterval(1_000_000, 300), 3_000);
});

test("reconnecting backs off exponentially up to 15 s, with jitter of a quarter either way", () => {
  assert.equal(reconnectDelay(0, 0.5), 500);
  assert.equal(reconnectDelay(3, 0.5), 4_000);
  assert.equal(reconnectDelay(10, 0.5), 15_000);
  assert.equal(reconnectDelay(0, 0), 375);
  assert.ok(reconnectDelay(30, 0.999) < 18_750);
});
