"""Run the demo: start two registries on loopback, seed the source, sync, show, re-sync;
then carry the mirror across an air gap in a bundle (`demo/airgap.py`).

`--keep` leaves the source ("hub") and the destination ("private") running afterwards, until
Ctrl-C or SIGTERM, and prints the `registries:` block that points README's first sync.yaml
(docker.io to registry.internal:5000) at them, so a newcomer can try it with no Docker Hub.

It reuses the test suite's registry launcher and image builder, so the demo runs
exactly what the tests exercise. Nothing leaves this machine.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from demo import airgap
from tests.support.images import make_image, make_index, make_layer, push
from tests.support.registry import RunningRegistry, start_registry

APPS = {
    "library/alpine": ["3.19", "3.20", "3.21-rc1", "latest"],
    "library/nginx": ["1.26", "1.27"],
    "acme/api": ["v1.0.0", "v1.1.0"],
}


def seed(hub: RunningRegistry) -> int:
    base = make_layer({"etc/os-release": b"ID=demo\n"})
    count = 0
    for repo, tags in APPS.items():
        for tag in tags:
            children = [
                make_image(
                    [base, make_layer({f"app/{repo}/{tag}/{arch}": f"{repo}:{tag}\n".encode()})],
                    fmt="oci",
                    arch=arch,
                )
                for arch in ("amd64", "arm64")
            ]
            push(hub.seed_url, repo, make_index(children, fmt="oci"), tag)
            count += 1
    return count


def config(hub: RunningRegistry, private: RunningRegistry) -> str:
    return f"""\
version: 1
defaults:
  platforms: all
registries:
  {hub.host}: {{tls: disabled}}
  {private.host}: {{tls: disabled, max_concurrency: 8}}
sync:
  - source: {hub.host}/library/alpine
    destination: {private.host}/mirror/alpine
    tags:
      allow: ["3\\\\.\\\\d+", "latest"]
      deny: [".*-rc.*"]
  - source: {hub.host}/library/nginx:1.27
    destination: {private.host}/mirror/nginx
  - source: {hub.host}/acme/api
    destination: {private.host}/mirror/acme-api
"""


def syncer(*args: str) -> int:
    cmd = [sys.executable, "-m", "syncer.cli", *args]
    print(f"\n$ syncer {' '.join(args)}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def keep_running(hub: RunningRegistry, private: RunningRegistry) -> None:
    """Print where the registries are and wait for Ctrl-C or SIGTERM (`--keep`)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Started in the background by a shell without job control, SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the finally of main() stops them
        print(
            "\n--keep: both registries stay up until Ctrl-C. To try README's first sync.yaml on\n"
            "them, use this registries: block in it (the hub stands in for Docker Hub):\n\n"
            f"registries:\n  docker.io:\n    endpoint: {hub.url}\n"
            f"  registry.internal:5000:\n    endpoint: {private.url}\n",
            flush=True,
        )
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a != "--keep"]
    if unknown:
        print(f"usage: scripts/demo [--keep]; unknown argument {unknown[0]!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="syncer-demo-") as tmp:
        work = Path(tmp)
        hub = start_registry(work, "anon")
        private = start_registry(work, "anon")
        stops = [hub.stop, private.stop]
        try:
            print(f"source registry ('hub'):   {hub.url}")
            print(f"destination (private):     {private.url}")
            print(f"seeded {seed(hub)} multi-arch tags into the hub")
            cfg = work / "sync.yaml"
            cfg.write_text(config(hub, private))
            print(f"\n--- {cfg}\n{cfg.read_text()}---")
            report = work / "report.json"
            first = syncer(
                "sync", "-c", str(cfg), "--report", str(report), "--log-format", "console"
            )
            totals = json.loads(report.read_text())["totals"]
            print(f"first run: exit {first}, totals {json.dumps(totals)}")
            syncer("tags", "-c", str(cfg), f"{private.host}/mirror/alpine")
            mark = private.mark()
            second = syncer(
                "sync", "-c", str(cfg), "--report", str(report), "--log-format", "console"
            )
            totals = json.loads(report.read_text())["totals"]
            writes = [
                r for r in private.requests_since(mark) if r.method in ("PUT", "POST", "PATCH")
            ]
            print(
                f"second run (no-op): exit {second}, copied {totals['tags_copied']}, "
                f"up to date {totals['tags_up_to_date']}, "
                f"requests to the mirror {len(private.requests_since(mark))}, writes {len(writes)}"
            )
            code = first or second or airgap.leg(work, private, stops)
            # Also before `--keep` waits: its exit code comes only after Ctrl-C.
            print(f"\ndemo: exit {code}", flush=True)
            if "--keep" in args:
                keep_running(hub, private)
            return code
        finally:
            for stop in stops:
                stop()


if __name__ == "__main__":
    sys.exit(main())
