"""Many people at once: N streams started together (100 tokens at 20 tok/s each), N = 50, 200,
500, 1,000, in embedded mode and (with DATABASE_URL and REDIS_URL) services mode, one server
process, against N direct readers of the same upstream in the same run.

    python -m bench.concurrency [--sizes 50,200,500,1000]
"""

import argparse
import asyncio
import time
from collections import Counter

from bench import harness
from bench.harness import Stream, median, percentile

TOKENS = 100
INTERVAL_MS = 50
SIZES = (50, 200, 500, 1000)
# Sizes also run on two server processes in services mode (the design's way past one core).
SCALE_OUT_SIZES = (500, 1000)
# Sockets opened at once before the run (opening is not what is measured).
CONNECT_BATCH = 100


def lateness(stream: Stream) -> float:
    """How much later than the upstream's schedule the last token arrived."""
    return stream.arrivals[-1][1] - (stream.sent + (TOKENS - 1) * INTERVAL_MS / 1000)


async def run_ours(site: harness.Site, size: int) -> tuple[list[Stream], float, float]:
    """The streams, the server's CPU seconds per stream, its peak memory (MB)."""
    sockets = []
    for start in range(0, size, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, size - start)
        sockets += await asyncio.gather(
            *(harness.ours_open(site, index) for index in range(start, start + batch))
        )
    streams = [Stream(tokens=TOKENS, interval_ms=INTERVAL_MS) for _ in range(size)]
    peak = site.rss_mb()
    cpu_before = site.cpu_seconds()

    async def one(socket, stream: Stream) -> None:
        try:
            await harness.ours_read(socket, stream)
        except Exception as exc:
            stream.error = type(exc).__name__

    async def sample_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, site.rss_mb())
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_memory())
    await asyncio.gather(*(one(s, stream) for s, stream in zip(sockets, streams, strict=True)))
    sampler.cancel()
    cpu = site.cpu_seconds() - cpu_before
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    return streams, cpu / size, peak


async def run_clients(size: int, read) -> list[Stream]:
    streams = [Stream(tokens=TOKENS, interval_ms=INTERVAL_MS) for _ in range(size)]
    await asyncio.gather(*(read(stream) for stream in streams))
    return streams


def row(name: str, streams: list[Stream], limit: list[Stream], extra: list[str]) -> list[str]:
    """First token over the streams that got one; lateness over the whole ones."""
    firsts = [s.first for s in streams if s.first is not None]
    limit_firsts = [s.first for s in limit if s.first is not None]
    late = [lateness(s) for s in streams if s.whole]
    limit_late = [lateness(s) for s in limit if s.whole]
    p50, p99 = percentile(firsts, 50), percentile(firsts, 99)
    errors = Counter(s.error or "incomplete" for s in streams if not s.whole)
    return [
        name,
        f"{sum(s.whole for s in streams)}/{len(streams)}",
        ", ".join(f"{count} {error}" for error, count in errors.most_common(3)) or "—",
        f"{p50:.3f} s ({harness.ratio(p50, median(limit_firsts))})",
        f"{p99:.3f} s ({harness.ratio(p99, percentile(limit_firsts, 99))})",
        f"{percentile(late, 99):.3f} s (direct {percentile(limit_late, 99):+.3f} s)",
        *extra,
    ]


def measure(mode: str, upstream_url: str, size: int) -> tuple[list[list[str]], dict]:
    # One user per stream: many people at once, each within their own answer limit.
    with harness.site(mode, upstream_url, users=size) as site:
        ours, cpu, peak = asyncio.run(run_ours(site, size))
    limit = asyncio.run(run_clients(size, lambda s: harness.direct(upstream_url, s)))
    rows = [
        row("direct", limit, limit, ["—", "—"]),
        row("ours", ours, limit, [f"{cpu * 1000:.0f} ms", f"{peak:.0f} MB"]),
    ]
    if mode == "services" and size in SCALE_OUT_SIZES:
        # The same streams on two server processes sharing the port (SERVER_PROCESSES=2, the
        # kernel spreading the sockets): what a second process adds.
        with harness.site(mode, upstream_url, processes=2, users=size) as site:
            two, cpu2, peak2 = asyncio.run(run_ours(site, size))
        rows.append(
            row("ours, 2 processes", two, limit, [f"{cpu2 * 1000:.0f} ms", f"{peak2:.0f} MB"])
        )
    target = harness.openwebui()
    if target:
        theirs = asyncio.run(run_clients(size, lambda s: harness.openwebui_stream(target, s)))
        rows.append(row("Open WebUI", theirs, limit, ["—", "—"]))
    figures = {
        "ours_first_p50": percentile([s.first for s in ours if s.first is not None], 50),
        "direct_first_p50": percentile([s.first for s in limit if s.first is not None], 50),
        "ours_late_p99": percentile([lateness(s) for s in ours if s.whole], 99),
        "direct_late_p99": percentile([lateness(s) for s in limit if s.whole], 99),
    }
    return rows, figures


def plot(mode: str, results: dict[int, dict]) -> str:
    sizes = sorted(results)

    def draw(axes):
        for key, label in (
            ("ours_first_p50", "ours: first token p50"),
            ("direct_first_p50", "direct: first token p50"),
            ("ours_late_p99", "ours: last token late by, p99"),
            ("direct_late_p99", "direct: last token late by, p99"),
        ):
            axes.plot(sizes, [max(results[n][key], 1e-3) for n in sizes], marker="o", label=label)
        axes.set_xlabel("streams at once")
        axes.set_ylabel("seconds")
        axes.set_yscale("log")
        axes.set_title(f"{TOKENS} tokens at 20 tok/s per stream, {mode} mode")
        axes.legend(fontsize="small")

    return harness.plot(f"concurrency-{mode}", draw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--modes", default="", help="embedded, services or both (the default)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    modes = [mode for mode in harness.modes() if not args.modes or mode in args.modes.split(",")]
    header = [
        "client",
        "whole",
        "failures",
        "first token p50 (x direct)",
        "first token p99 (x direct)",
        "last token late by, p99",
        "server CPU per stream",
        "server peak memory",
    ]
    parts = [
        "## Many streams at once\n",
        f"N streams sent at once by N users, each {TOKENS} tokens at 20 tok/s, on one server "
        "process (and, in services mode at N = 500 and 1,000, also on two: `SERVER_PROCESSES=2` "
        "on one port). "
        "*Late by*: the last token's arrival after the upstream's schedule (send time + 5 s). "
        "The bench's own clients share the machine with the server.\n",
    ]
    with harness.upstream() as upstream_url:
        for mode in modes:
            results = {}
            parts.append(f"### {mode} mode\n")
            for size in sizes:
                started = time.monotonic()
                rows, results[size] = measure(mode, upstream_url, size)
                parts += [
                    f"**N = {size}** ({time.monotonic() - started:.0f} s)\n",
                    harness.table(header, rows) + "\n",
                ]
            parts.append(plot(mode, results) + "\n")
    harness.write_section("concurrency", "\n".join(parts))


if __name__ == "__main__":
    main()
