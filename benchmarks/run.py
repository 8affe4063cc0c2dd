"""Run the benchmarks and write `bench.json` and `BENCH.md`.

    python -m benchmarks.run                 # full sizes (make bench), under 10 minutes, 1 thread
    python -m benchmarks.run --threads 2     # all cores of an otherwise idle 2-core machine
    python -m benchmarks.run --quick         # smoke sizes, well under a minute
    python -m benchmarks.run --only step_ratio loop --out /tmp/bench
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import Section, Sizes, machine, set_threads

BENCHMARKS = ("step_ratio", "loop", "evaluation", "scaling")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="folder for bench.json and BENCH.md")
    p.add_argument("--quick", action="store_true", help="tiny smoke sizes (the figures mean nothing)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads (default 1: on cores shared with other jobs, multi-threaded "
                        "CPU timings swing by 10x because every parallel region waits for a descheduled "
                        f"thread; this machine has {os.cpu_count()} cores)")
    p.add_argument("--weights", default="none",
                   help="backbone weights for the timing benchmarks: none (default) or packaged")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="run a subset")
    p.add_argument("--repeats", type=int, default=None, help="override every repeat count")
    p.add_argument("--render", type=Path, default=None, metavar="BENCH_JSON",
                   help="measure nothing: rewrite BENCH.md in --out from an existing bench.json")
    return p.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if args.repeats is not None:
        from dataclasses import replace

        r = max(1, args.repeats)
        sizes = replace(sizes, repeats=r, loop_repeats=r, eval_repeats=r, memory_repeats=r, scale_repeats=r)
    return sizes


def main(argv: list[str] | None = None, log=None) -> dict:
    args = parse_args(argv)
    log = log or (lambda msg: print(msg, flush=True))
    if args.render is not None:
        from benchmarks.report import markdown

        result = json.loads(args.render.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "BENCH.md").write_text(markdown(result))
        log(f"wrote {args.out / 'BENCH.md'} from {args.render}")
        return result
    set_threads(args.threads)
    sizes = sizes_for(args)
    tic = time.perf_counter()
    result = {
        "schema": 1,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine(args.threads),
        "sizes": sizes.as_dict(),
        "benchmarks": {},
    }
    from benchmarks import evaluation, loop, scaling, step_ratio

    runners = {
        "step_ratio": lambda: step_ratio.run(sizes, args.weights, log),
        "loop": lambda: loop.run(sizes, args.weights, log),
        "evaluation": lambda: evaluation.run(sizes, log),
        "scaling": lambda: scaling.run(sizes, args.threads, args.weights, log),
    }
    for name in BENCHMARKS:
        if name not in args.only:
            continue
        log(f"[{name}]")
        with Section(name) as section:
            section.data.update(runners[name]())
        result["benchmarks"][name] = section.data
        log(f"[{name}] {section.data['wall_seconds']:.0f} s")

    from benchmarks.report import goals, markdown

    result["total_seconds"] = time.perf_counter() - tic
    result["goals"] = goals(result["benchmarks"])
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    result = json.loads(text)  # the Markdown is rendered from exactly what bench.json holds
    (args.out / "bench.json").write_text(text)
    (args.out / "BENCH.md").write_text(markdown(result))
    for g in result["goals"]:
        met = "-" if g["met"] is None else ("met" if g["met"] else "NOT met")
        s = g["measured"]
        log(f"{g['benchmark']}: {s['median']:.3f} {g['unit']} [{s['min']:.3f}, {s['max']:.3f}] "
            f"(goal {g['goal']}): {met}")
    log(f"wrote {args.out / 'bench.json'} and {args.out / 'BENCH.md'} in {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
