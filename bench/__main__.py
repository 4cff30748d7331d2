"""`make bench`: run every scenario, each in a process of its own, then assemble
docs/benchmarks.md from the sections they wrote.

A scenario is a module of this package listed in SCENARIOS that defines `main()` and writes
`docs/benchmarks/<name>.md`; `python -m bench.<name>` runs one alone. Other modules here
(`soak`, `big_posts`, `import_contention`) are measurements of their own, run by hand or by
`make soak`; `screenshots` writes the README's screenshots. `python -m bench --only
single,stop` runs some; `--only none` only assembles the page again.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import DOCS, ROOT

HERE = Path(__file__).resolve().parent
# The scenarios, in the page's order.
SCENARIOS = ["single", "concurrency", "stop", "starts", "search"]


def scenarios() -> list[str]:
    return list(SCENARIOS)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"Run on {time.strftime('%Y-%m-%d')}, commit `{commit or 'unknown'}`: {os.cpu_count()} "
        f"cores ({model}), Python {platform.python_version()}; load average at the start "
        f"{load}."
    )


def assemble(names: list[str]) -> None:
    parts = [(HERE / "INTRO.md").read_text().rstrip()]
    # `run`: the machine line of the last run; `notes`: what the figures mean for the targets,
    # written by hand after a run and kept across runs.
    for name in ["run", "notes", *names]:
        section = DOCS / f"{name}.md"
        if section.exists():
            parts += ["", section.read_text().rstrip()]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts) + "\n")


def main_all() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""))
    args = parser.parse_args()
    names = scenarios()
    chosen = [name for name in names if not args.only or name in args.only.split(",")]
    failed = []
    if chosen:
        DOCS.mkdir(parents=True, exist_ok=True)
        line = machine() + (f" {args.note}" if args.note else "")
        (DOCS / "run.md").write_text(f"## This run\n\n{line}\n")
    for name in chosen:
        started = time.monotonic()
        print(f"=== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT).returncode:
            failed.append(name)
        print(f"=== bench.{name}: {time.monotonic() - started:.0f} s", flush=True)
    assemble(names)
    if failed:
        sys.exit(f"scenarios that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main_all()
