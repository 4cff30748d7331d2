// The pure rules of the composer's attachments: size limits, the token estimate, sizes shown.
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatSize, refusalOf, tokenEstimate } from "../../static/js/attachments.mjs";

const limits = { file: 1000, message: 1500, count: 2 };

test("the token estimate is four characters a token, rounded up", () => {
  assert.deepEqual([0, 4, 5, 400].map(tokenEstimate), [0, 1, 2, 100]);
});

test("sizes read as bytes, KB or MB", () => {
  assert.deepEqual([12, 2048, 10 * 1024 * 1024, 1.5 * 1024 * 1024].map(formatSize), [
    "12 bytes",
    "2 KB",
    "10 MB",
    "1.5 MB",
  ]);
});

test("a file over a limit is refused with the limit named, before any upload", () => {
  assert.equal(refusalOf({ name: "a.txt", size: 10 }, [], limits), "");
  assert.equal(refusalOf({ name: "big.txt", size: 1001 }, [], limits), "big.txt is larger than 1000 bytes.");
  assert.equal(
    refusalOf({ name: "b.txt", size: 900 }, [{ size: 900 }], limits),
    "The files of one message may total 1 KB.",
  );
  assert.equal(
    refusalOf({ name: "c.txt", size: 1 }, [{ size: 1 }, { size: 1 }], limits),
    "At most 2 files can go with one message.",
  );
});
