/* The rules of the live stream and of the outbox, apart from the page and the socket, so that
 * they can be tested without a browser (tests/js, Node's test runner). Pure functions: they
 * decide, chat.js does. */

// What a message.delta with `seq` does to an answer's stream (`null`: the page is not following
// it): "append" the next one, "ignore" one not ours or already applied, or "resync" after a gap
// (something was lost: a new snapshot brings the text back in step).
export function deltaAction(stream, seq) {
  if (!stream || seq <= stream.seq) return "ignore";
  return seq === stream.seq + 1 ? "append" : "resync";
}

// Milliseconds to wait before asking the server to render the text so far, at most one request
// per `interval` per answer; `null` while one is already waiting or running (it will pick up
// the newer text).
export function renderDelay(stream, now, interval) {
  if (stream.timer || stream.asking) return null;
  return Math.max(0, stream.askedAt + interval - now);
}

// How often the text so far may be rendered: each render sends the whole text and costs the
// server time in proportion to it (about 2 ms per 1,000 characters), so a longer answer is
// rendered less often, keeping the server's share per streaming answer to a few percent.
export function renderInterval(length, base) {
  return Math.min(base + Math.floor(length / 1000) * 60, 3000);
}

// Whether the outbox may send its next request: one at a time, each once the answer before it
// has ended and the socket is open and in step.
export function outboxMaySend({ waiting, open, sending, syncing, streaming }) {
  return waiting > 0 && open && !sending && !syncing && streaming === 0;
}

// What the composer says about requests waiting for the connection ("" for nothing).
export function outboxNotice(waiting, open) {
  if (!waiting || open) return "";
  const what = waiting === 1 ? "Your message" : waiting + " messages";
  return `Not connected. ${what} will be sent when the connection is back.`;
}

// Milliseconds before reconnecting after `attempts` failed tries: exponential backoff up to 15 s,
// with jitter (`random` in [0, 1)) so that a restarted server is not hit by every tab at once.
export function reconnectDelay(attempts, random) {
  return Math.min(15000, 500 * 2 ** attempts) * (0.75 + random * 0.5);
}
