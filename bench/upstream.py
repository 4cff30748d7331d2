"""The upstream every benchmark reads: an OpenAI-compatible chat-completions server that streams
as fast, or as slowly, as the request asks, and stamps every token with the moment it was written.

    python -m bench.upstream [port]     # prints "port <n>" once listening on 127.0.0.1

The last user message sets the stream: `tokens=<n> interval_ms=<ms>` (0: full speed). Each token's
text is `<index>@<monotonic seconds> `, so whichever client receives it (our WebSocket, a direct
SSE reader, Open WebUI) can tell how long it took to arrive; CLOCK_MONOTONIC is shared by every
process on the machine.

Written on asyncio streams rather than reusing tests/fake_upstream.py (a thread per connection):
the concurrency runs hold a thousand streams open at once, and a thousand Python threads would
make the upstream, not the server under test, the bottleneck.
"""

import asyncio
import json
import re
import sys
import time
import uuid

MODELS = ["fake-model"]
TOKEN = re.compile(r"(\d+)@(\d+\.\d+) ")


def stream_spec(prompt: str) -> tuple[int, float]:
    """(tokens, seconds between tokens) asked for by a prompt."""
    fields = dict(re.findall(r"(\w+)=([\d.]+)", prompt))
    return int(fields.get("tokens", 100)), float(fields.get("interval_ms", 0)) / 1000


def token_stamps(text: str) -> list[tuple[int, float]]:
    """(index, monotonic time written) of every whole token in `text`."""
    return [(int(index), float(stamp)) for index, stamp in TOKEN.findall(text)]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(completion: str, delta: dict, finish: str | None = None) -> bytes:
    payload = {
        "id": completion,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODELS[0],
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")


async def stream_completion(writer: asyncio.StreamWriter, prompt: str) -> None:
    tokens, interval = stream_spec(prompt)
    completion = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(event(completion, {"role": "assistant", "content": ""}))
    await writer.drain()
    started = time.monotonic()
    for index in range(tokens):
        if interval:
            # Paced against the start, so a late wake-up does not delay every later token.
            await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        writer.write(event(completion, {"content": f"{index}@{time.monotonic():.6f} "}))
        await writer.drain()
    writer.write(event(completion, {}, "stop"))
    usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
    final = {"id": completion, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    writer.write(chunk(b"data: " + json.dumps(final).encode() + b"\n\n"))
    writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


def json_response(payload: dict, status: str = "200 OK") -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while request := await read_request(reader):
            method, path, body = request
            if method == "GET" and path.endswith("/models"):
                models = [{"id": m, "object": "model", "owned_by": "bench"} for m in MODELS]
                writer.write(json_response({"object": "list", "data": models}))
            elif method == "POST" and path.endswith("/chat/completions"):
                messages = json.loads(body).get("messages") or [{}]
                await stream_completion(writer, str(messages[-1].get("content", "")))
            else:
                writer.write(json_response({"error": {"message": "no route"}}, "404 Not Found"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away (a stop, or the end of a keep-alive connection)
    finally:
        writer.close()


async def serve(port: int = 0) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
