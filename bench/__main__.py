"""`python -m bench`: the full benchmark (wrk, about two minutes) or `--smoke` (a few seconds, no wrk).

The full run writes `bench/results/latest.md` and `latest.json` (or `--stem NAME`) and prints the
table; `--smoke` prints its table and exits 1 on a gross regression, as CI's test does.
`--profile` records Detour under load with py-spy instead (see `bench.profile`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from bench.procs import ROOT

RESULTS = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Detour's benchmark (docs/architecture.md §7)."
    )
    parser.add_argument("--smoke", action="store_true", help="the few-seconds CI run (no wrk)")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of Detour under load")
    parser.add_argument(
        "--scenario", default="openai", help="with --profile: openai, openai-stream, anthropic or failover"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per scenario")
    parser.add_argument("--events", type=int, default=200, help="SSE events per stream (default 200)")
    parser.add_argument("--startups", type=int, default=5, help="fresh starts timed to /readyz")
    parser.add_argument("--no-telemetry", action="store_true", help="skip the telemetry-exporting runs")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC Proxy runs")
    parser.add_argument("--telemetry", action="store_true", help="with --profile: Detour exporting telemetry")
    parser.add_argument(
        "--stack",
        default="detour",
        help="what to run as Detour: 'detour' (default) or an alternative from bench.variants",
    )
    parser.add_argument("--compare", help="comma-separated stacks to compare, interleaved (bench.compare)")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: interleaved rounds")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="results directory")
    parser.add_argument("--stem", default=None, help="results file name (default: latest, or the stack)")
    parser.add_argument("--render", type=pathlib.Path, help="re-render a results JSON as markdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        from bench.report import render_markdown

        print(render_markdown(json.loads(args.render.read_text())))
        return 0
    if args.smoke:
        from bench.smoke import regressions, render_smoke, run_smoke

        smoke = run_smoke()
        print(render_smoke(smoke))
        problems = regressions(smoke)
        for problem in problems:
            print(f"REGRESSION: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args.compare:
        from bench.compare import render_compare, run_compare

        compared = run_compare(args.compare.split(","), rounds=args.rounds, duration_s=args.duration)
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.stem or "compare"
        (args.out / f"{stem}.json").write_text(json.dumps(compared, indent=2) + "\n")
        table = render_compare(compared)
        (args.out / f"{stem}.md").write_text(table)
        print(table)
        return 0
    from bench.variants import command_for, serves_grpc

    command = command_for(args.stack)
    if args.profile:
        from bench.profile import run_profile
        from bench.scenarios import BY_NAME

        scenario = BY_NAME[args.scenario]
        duration = max(args.duration, 10)
        print(
            run_profile(
                args.out,
                duration_s=duration,
                command=command,
                stem=args.stack,
                scenario=scenario,
                telemetry=args.telemetry,
            )
        )
        return 0
    from bench.full import Settings, run_full
    from bench.report import failures, write_results

    settings = Settings(
        duration_s=args.duration,
        warmup_s=args.warmup,
        events=args.events,
        startups=args.startups,
        telemetry=not args.no_telemetry,
        grpc=not args.no_grpc and serves_grpc(args.stack),
        detour_command=command,
        label=args.stack,
    )
    results = run_full(settings)
    stem = args.stem or ("latest" if args.stack == "detour" else args.stack)
    markdown = write_results(results, args.out, stem)
    print(markdown.read_text())
    print(f"written: {markdown} and {markdown.with_suffix('.json')}")
    for line in failures(results["metrics"]):
        print(f"target not met: {line}")
    if results["metrics"]["errors"]:
        print(
            f"ERROR: {results['metrics']['errors']} requests failed through Detour; the numbers are not valid"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
