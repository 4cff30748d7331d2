"""One stream at a time: 2,000 tokens at full speed (time to first token, request → last token,
frames and bytes on the wire) and 50 tokens per second (latency each token adds on its way),
our WebSocket against a direct reader of the same upstream, runs interleaved.

    python -m bench.single [--runs 5]
"""

import argparse
import asyncio

from bench import harness
from bench.harness import Stream, median, ms, percentile, ratio

FAST_TOKENS = 2000
PACED_TOKENS = 150
PACED_INTERVAL_MS = 20


async def interleaved(
    site: harness.Site, upstream_url: str, runs: int, tokens: int, interval_ms: float = 0
) -> dict[str, list[Stream]]:
    """`runs` streams per client, the clients taking turns."""
    target = harness.openwebui()
    results: dict[str, list[Stream]] = {"direct": [], "ours": []}
    if target:
        results["Open WebUI"] = []
    for _ in range(runs):
        for name, streams in results.items():
            stream = Stream(tokens=tokens, interval_ms=interval_ms)
            if name == "direct":
                await harness.direct(upstream_url, stream)
            elif name == "ours":
                await harness.ours(site, stream)
            else:
                await harness.openwebui_stream(target, stream)
            streams.append(stream)
    return results


def fast_table(results: dict[str, list[Stream]]) -> tuple[str, dict[str, float]]:
    direct = results["direct"]
    limit_first = median([s.first for s in direct if s.first is not None])
    limit_last = median([s.last for s in direct if s.last is not None])
    rows, figures = [], {}
    for name, streams in results.items():
        first = median([s.first for s in streams if s.first is not None])
        last = median([s.last for s in streams if s.last is not None])
        frames = median([s.frames for s in streams])
        per_token = median([s.wire_bytes / max(1, len(s.indexes)) for s in streams])
        whole = sum(s.whole for s in streams)
        figures[name] = first
        rows.append(
            [
                name,
                f"{ms(first)} ({ratio(first, limit_first)})",
                f"{ms(last)} ({ratio(last, limit_last)})",
                f"{frames:.0f}",
                f"{FAST_TOKENS / max(1, frames):.1f}",
                f"{per_token:.0f}",
                f"{whole}/{len(streams)}",
            ]
        )
    header = [
        "client",
        "first token (x direct)",
        "request → last token (x direct)",
        "frames",
        "tokens per frame",
        "bytes per token",
        "whole",
    ]
    return harness.table(header, rows), figures


def paced_table(results: dict[str, list[Stream]]) -> tuple[str, dict[str, list[float]]]:
    latencies = {
        name: [value for s in streams for value in s.latencies()]
        for name, streams in results.items()
    }
    limit = latencies["direct"]
    rows = []
    for name, values in latencies.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append(
            [
                name,
                f"{ms(p50)} ({ratio(p50, percentile(limit, 50))})",
                f"{ms(p99)} ({ratio(p99, percentile(limit, 99))})",
                f"{ms(max(values) if values else float('nan'))}",
                f"{sum(s.whole for s in results[name])}/{len(results[name])}",
            ]
        )
    header = ["client", "p50 (x direct)", "p99 (x direct)", "max", "whole"]
    return harness.table(header, rows), latencies


def paced_plot(mode: str, latencies: dict[str, list[float]]) -> str:
    def draw(axes):
        for name, values in latencies.items():
            ordered = sorted(v * 1000 for v in values)
            axes.plot(
                ordered, [i / max(1, len(ordered) - 1) for i in range(len(ordered))], label=name
            )
        axes.set_xlabel("latency the path adds to a token (ms)")
        axes.set_ylabel("share of tokens")
        axes.set_xscale("symlog", linthresh=1)
        axes.set_title(f"{PACED_TOKENS} tokens at 50 tok/s, {mode} mode")
        axes.legend()

    return harness.plot(f"single-paced-{mode}", draw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    parts = [
        "## One stream\n",
        f"Medians of {args.runs} interleaved runs per client. Ratios are to *direct* (a plain "
        "asyncio reader of the same upstream) measured in the same run.\n",
    ]
    with harness.upstream() as upstream_url:
        for mode in harness.modes():
            with harness.site(mode, upstream_url) as site:
                fast = asyncio.run(interleaved(site, upstream_url, args.runs, FAST_TOKENS))
                paced = asyncio.run(
                    interleaved(
                        site, upstream_url, max(2, args.runs // 2), PACED_TOKENS, PACED_INTERVAL_MS
                    )
                )
            fast_md, _ = fast_table(fast)
            paced_md, latencies = paced_table(paced)
            parts += [
                f"### {mode} mode: {FAST_TOKENS} tokens at full speed\n",
                fast_md + "\n",
                f"### {mode} mode: {PACED_TOKENS} tokens at 50 tok/s, latency added per token\n",
                "From the moment the upstream wrote a token to the moment the client had it.\n",
                paced_md + "\n",
                paced_plot(mode, latencies) + "\n",
            ]
    harness.write_section("single", "\n".join(parts))


if __name__ == "__main__":
    main()
