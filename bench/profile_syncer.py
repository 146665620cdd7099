"""Profile syncer alone in one benchmark scenario, to see where its time goes.

    .venv/bin/python -m bench.profile_syncer {full,noop,scale,bigblob} [--py-spy PATH] [--top 25]
        [--env KEY=VALUE ...] [--quick]

Sets up the same registries and fleet as bench.run, then runs `syncer sync` under
`py-spy record` (sampling; `pip install py-spy` anywhere, e.g. `--target /tmp/pyspy`, then
pass `--py-spy /tmp/pyspy/bin/py-spy`). Without py-spy it still prints wall time and peak
RSS, which with `--env` is enough to test memory hypotheses (e.g. glibc malloc settings).
Prints the functions with the most samples, self and inclusive. `--wrap` runs syncer under
another tool instead (memray for memory).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.bigblob import push_big_image
from bench.fleet import FleetSpec, MiB, build_fleet, scale_names, seed_items, seed_scale, tiny_image
from bench.scenarios import Bench, log
from bench.tools import Job, run_tool


def summarize_raw(path: Path, top: int) -> str:
    """py-spy's raw format: `frame;frame;...;leaf count` per line, frames `func (file:line)`."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        # Drop line numbers so one function's samples add up across its lines.
        frames = [f.split(":")[0] + ")" if ":" in f else f for f in stack.split(";")]
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples"]
    for title, c in (("self", self_c), ("inclusive", incl)):
        out.append(f"--- top {top} by {title} samples")
        out += [f"{n / total:6.1%}  {f}" for f, n in c.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_syncer", description=__doc__)
    p.add_argument("scenario", choices=("full", "noop", "scale", "bigblob"))
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for syncer")
    p.add_argument("--quick", action="store_true", help="the quick fleet (full/noop)")
    p.add_argument("--out", type=Path, help="keep the raw profile here")
    p.add_argument(
        "--wrap",
        help="run syncer under this command instead of py-spy (e.g. 'python -m memray run -o "
        "m.bin'); syncer's console script is appended",
    )
    args = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)

    tmp = Path(tempfile.mkdtemp(prefix="syncer-profile-"))
    bench = Bench(tmp, timeout_s=900.0)
    raw = tmp / "profile.txt"
    prefix: tuple[str, ...] = ()
    if args.wrap:
        prefix = tuple(shlex.split(args.wrap))
    elif args.py_spy:
        prefix = (args.py_spy, "record", "-r", str(args.rate), "--format", "raw")
        prefix += ("-o", str(raw), "--")
    else:
        log("no py-spy: timing and RSS only")
    try:
        src, dst = bench.registry(), bench.registry()
        if args.scenario in ("full", "noop"):
            spec = FleetSpec(6, 6) if args.quick else FleetSpec(12, 8)
            bf = build_fleet(spec)
            seed_items(src.url, bf.fleet.items())
            job = Job(src, dst, sorted(bf.fleet.repos))
            if args.scenario == "noop":
                run_tool("syncer", job, tmp, "prep", 900.0)
        elif args.scenario == "scale":
            names, image = scale_names(20, 100, "scale"), tiny_image()
            seed_scale(src.url, names, image)
            job = Job(src, dst, sorted(names))
            seed_scale(dst.url, {job.dest_repo(r): t for r, t in names.items()}, image)
        else:
            push_big_image(src.url, "big/blob", "1", 1024 * MiB, seed=20240601)
            job = Job(src, dst, ["big/blob"])
        res = run_tool("syncer", job, tmp, "profiled", 900.0, prefix=prefix, env=env)
        print(
            f"{args.scenario}: exit {res.returncode}, wall {res.wall_s:.2f}s (under the "
            f"profiler), in-process {(res.report or {}).get('duration_s')}s, "
            f"peak RSS {res.rss_kib / 1024:.0f} MiB (max over the process tree), env {env}"
        )
        if not res.ok:
            print(res.output_tail)
        if raw.exists():
            print(summarize_raw(raw, args.top))
            if args.out:
                shutil.copy(raw, args.out)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
