"""Stopping: the time from `chat.stop` to the answer's `message.done` (the upstream request is
closed before the done frame goes out), against a direct reader closing its connection.

    python -m bench.stop [--runs 20]
"""

import argparse
import asyncio
import json
import time

from bench import harness
from bench.harness import Stream, ms, percentile

TOKENS = 2000
INTERVAL_MS = 20


async def direct_stop(upstream_url: str) -> float:
    """Read up to the first token, then close the connection: the time closing takes."""
    host, port = upstream_url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": "fake-model",
            "stream": True,
            "messages": [{"role": "user", "content": harness.prompt(TOKENS, INTERVAL_MS)}],
        }
    ).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    while b'"content": "0@' not in await reader.readline():
        pass
    stopping = time.monotonic()
    writer.close()
    await writer.wait_closed()
    return time.monotonic() - stopping


async def runs(site: harness.Site, upstream_url: str, count: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"direct": [], "ours": []}
    for _ in range(count):
        results["direct"].append(await direct_stop(upstream_url))
        stopped = await harness.ours(
            site, Stream(tokens=TOKENS, interval_ms=INTERVAL_MS), stop_after_first=True
        )
        if stopped is not None:
            results["ours"].append(stopped)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    parts = [
        "## Stopping an answer\n",
        f"{args.runs} runs per client: stop at the first token of a 20 tok/s stream.\n",
    ]
    header = ["mode", "client", "p50", "p95", "max", "stops that ended"]
    rows = []
    with harness.upstream() as upstream_url:
        for mode in harness.modes():
            with harness.site(mode, upstream_url) as site:
                results = asyncio.run(runs(site, upstream_url, args.runs))
            for name, values in results.items():
                rows.append(
                    [
                        mode,
                        name,
                        ms(percentile(values, 50)),
                        ms(percentile(values, 95)),
                        ms(max(values) if values else float("nan")),
                        f"{len(values)}/{args.runs}",
                    ]
                )
    parts.append(harness.table(header, rows) + "\n")
    harness.write_section("stop", "\n".join(parts))


if __name__ == "__main__":
    main()
