import assert from "node:assert/strict";
import { test } from "node:test";

import { Outbox } from "../../static/js/outbox.mjs";

const READY = { open: true, syncing: null, streaming: 0 };

// A chat.send as composer.mjs queues it: built when it goes out, numbered in that order.
function sendItem(content, { conversation = "c1" } = {}) {
  let built = 0;
  return {
    content,
    frame: () => ({ type: "chat.send", conversation, content, request_id: `${content}-${++built}` }),
  };
}

test("requests go out one at a time, oldest first, each once the answer before has started and ended", () => {
  const outbox = new Outbox();
  outbox.add(sendItem("first"));
  outbox.add(sendItem("second"));
  assert.equal(outbox.take({ ...READY, open: false }), null);
  const first = outbox.take(READY);
  assert.equal(first.content, "first");
  assert.equal(outbox.sending, "first-1");
  // Sent but not started: the next one waits.
  assert.equal(outbox.take(READY), null);
  outbox.started("someone-elses");
  assert.equal(outbox.take(READY), null);
  outbox.started("first-1");
  // Started: it waits for the answer to end.
  assert.equal(outbox.take({ ...READY, streaming: 1 }), null);
  assert.equal(outbox.take({ ...READY, syncing: "sub-1" }), null);
  assert.equal(outbox.take(READY).content, "second");
  assert.equal(outbox.size, 0);
  assert.equal(outbox.take(READY), null);
});

test("a frame is built when it goes out, not when it is queued", () => {
  const outbox = new Outbox();
  let parent = "m1";
  outbox.add({ content: "x", frame: () => ({ type: "chat.send", conversation: "c1", parent, request_id: "r" }) });
  parent = "m2";
  assert.equal(outbox.take(READY).parent, "m2");
});

test("a socket closed while a request was on its way asks for a resync, once", () => {
  const outbox = new Outbox();
  assert.equal(outbox.closed(), false);
  outbox.add(sendItem("a"));
  outbox.take(READY);
  assert.equal(outbox.closed(), true);
  assert.equal(outbox.sending, null);
  assert.equal(outbox.closed(), false);
});

test("only the chat.send that starts a conversation claims the conversation.created", () => {
  const outbox = new Outbox();
  assert.equal(outbox.claimNew("r"), false);
  outbox.add(sendItem("hello", { conversation: null }));
  outbox.take(READY);
  assert.equal(outbox.claimNew("another-tab"), false);
  assert.equal(outbox.claimNew("hello-1"), true);
  assert.equal(outbox.claimNew("hello-1"), false);
  outbox.started("hello-1");
  // A frame without request_id (an older server) is taken as ours while we wait for one.
  outbox.add(sendItem("again", { conversation: null }));
  outbox.started(outbox.take(READY).request_id);
  assert.equal(outbox.claimNew(undefined), true);
});

test("a refused request gives its text back once, and frees the outbox", () => {
  const outbox = new Outbox();
  outbox.add(sendItem("hello", { conversation: null }));
  outbox.add(sendItem("then this"));
  outbox.take(READY);
  assert.equal(outbox.refused("other"), null);
  assert.equal(outbox.refused(undefined), null);
  assert.equal(outbox.refused("hello-1"), "hello");
  assert.equal(outbox.sending, null);
  assert.equal(outbox.awaitingNew, null);
  assert.equal(outbox.refused("hello-1"), null);
  assert.deepEqual(outbox.drain(), ["then this"]);
  assert.equal(outbox.size, 0);
});

test("a waiting message shows as pending until it goes out, and can be cancelled until then", () => {
  const outbox = new Outbox();
  const first = outbox.add(sendItem("first"));
  const edit = outbox.add({ content: "", frame: () => ({ type: "chat.edit", request_id: "e" }) });
  const second = outbox.add(sendItem("second"));
  assert.notEqual(first, second);
  // An edit or a regenerate has no text of its own to show.
  assert.deepEqual(outbox.pending(), [
    { key: first, content: "first" },
    { key: second, content: "second" },
  ]);
  assert.equal(outbox.cancel(first), true);
  assert.equal(outbox.cancel(first), false);
  assert.equal(outbox.take(READY).type, "chat.edit");
  assert.equal(outbox.cancel(edit), false);
  assert.deepEqual(outbox.pending(), [{ key: second, content: "second" }]);
  outbox.started("e");
  assert.equal(outbox.take(READY).content, "second");
  assert.deepEqual(outbox.pending(), []);
  assert.equal(outbox.cancel(second), false);
});
