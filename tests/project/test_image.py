"""The image the CronJob runs: built from the Dockerfile, and the deployed commands inside it.

The image is built once per session by scripts/build-image --local-base: the Dockerfile as
it is, on a stand-in for python:3.11-slim-bookworm made from Debian's packages (nothing can
be pulled here). Commands run in it with buildah's chroot isolation, as the rendered
manifests say (tests/project/image_support.py), against real loopback registries. Without
buildah, mmdebstrap and podman (or as non-root) these skip with one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.project import image_support as k8s
from tests.support import container
from tests.support.container import BuiltImage, Mount
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import Fleet, wait_for_requests
from tests.support.http import http_client
from tests.support.images import fetch_manifest_digest
from tests.support.registry import RegistryFactory, RunningRegistry

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# Bytes the image adds to its base: syncer and its dependencies, installed and compiled
# (about 70 MB, measured). A compiler, a pip cache or the wheels left behind would cross it.
SIZE_BUDGET = 100 * 1000 * 1000
# Per session: two sessions on one machine share the storage (and its cached base), and a
# fixed name would let one session's build or teardown replace the other's image.
TEST_IMAGE = f"localhost/syncer-test:session-{os.getpid()}"


@pytest.fixture(scope="session")
def image() -> Iterator[BuiltImage]:
    container.require_tools()
    built = container.build_image(TEST_IMAGE)
    print(f"image {built.name}: built in {built.build_seconds:.1f}s, {built.size} bytes")
    yield built
    subprocess.run(["buildah", "rmi", "--force", built.name], env=built.env, capture_output=True)
    subprocess.run(["buildah", "rmi", "--prune"], env=built.env, capture_output=True)


@pytest.fixture
def plain(image: BuiltImage, tmp_path: Path) -> Iterator[container.Container]:
    """A container of the image with nothing mounted, root writable."""
    ctr = container.Container(image, [], read_only_root=False)
    yield ctr
    ctr.remove()


def dockerfile_base_minor() -> str:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    m = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim-bookworm$", text, re.M)
    assert m, "the Dockerfile's default base is no longer python:X.Y-slim-bookworm"
    return m.group(1)


# --- 1. The image ------------------------------------------------------------------


def test_image_labels_user_and_entrypoint(image: BuiltImage) -> None:
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    labels = image.labels()
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == revision
    # Who built the base is the one difference from production, and the label says so.
    assert labels["org.opencontainers.image.base.name"] == image.base
    assert image.base.startswith("localhost/syncer-base:")
    assert image.config["User"] == "65532:65532"
    assert image.config["Entrypoint"] == ["syncer"] and image.config["Cmd"] == ["sync"]


def test_same_python_and_paths_as_the_real_base(plain: container.Container) -> None:
    probe = "import sys, shutil; print(sys.version_info[0], sys.version_info[1], sys.prefix)"
    out = plain.run(["python3", "-c", probe])
    assert out.returncode == 0, out.stderr
    major, minor, prefix = out.stdout.split()
    assert f"{major}.{minor}" == dockerfile_base_minor() == "3.11"
    assert prefix == "/usr/local"  # python:3.11-slim installs there too
    where = plain.run(["sh", "-c", "command -v syncer; command -v pip; id -u; id -g"])
    assert where.stdout.split() == ["/usr/local/bin/syncer", "/usr/local/bin/pip", "65532", "65532"]


def test_syncer_version_as_uid_65532(plain: container.Container) -> None:
    out = plain.run(["syncer", "--version"])  # the image's USER, not root
    assert (out.returncode, out.stdout.strip()) == (0, f"syncer {VERSION}"), out.stderr


def test_no_build_leftovers_and_size_within_budget(
    image: BuiltImage, plain: container.Container
) -> None:
    root = plain.root
    assert not (root / "src").exists() and not (root / "wheels").exists()
    assert not list(root.glob("usr/local/lib/python3*/site-packages/**/*.whl"))
    for cache in ("root/.cache", "tmp/.cache", "root/.cache/pip"):
        assert not (root / cache).exists(), cache
    assert not [p.name for p in (root / "tmp").iterdir()]
    for tool in ("gcc", "cc", "c++", "g++", "clang", "make", "ld"):
        for folder in ("usr/bin", "usr/local/bin"):
            assert not (root / folder / tool).exists(), f"/{folder}/{tool}"
    added = image.size - image.base_size
    print(f"image adds {added} bytes to its base ({image.base_size} bytes)")
    assert 0 < added < SIZE_BUDGET


# --- 2. The deployed commands, inside the image ------------------------------------


class Cluster:
    """The loopback world of one test: the source fleet, a destination behind basic auth
    (credentials only in the Secret's docker config), and the rendered objects."""

    def __init__(self, registry_factory: RegistryFactory, tmp_path: Path) -> None:
        self.src = registry_factory("anon")
        self.dst = registry_factory("basic")
        self.fleet: Fleet = k8s.make_fleet()
        self.fleet.push(self.src.seed_url)
        self.tmp = tmp_path
        self.pods: list[k8s.Pod] = []

    def pod(
        self, image: BuiltImage, doc: dict[str, Any], docs: dict[str, Any], **opts: Any
    ) -> k8s.Pod:
        src: RunningRegistry = opts.get("src", self.src)
        config = dict(docs["ConfigMap/syncer-config"]["data"])
        config["sync.yaml"] = opts.get("sync_yaml") or k8s.sync_yaml(
            docs["ConfigMap/syncer-config"], src, self.dst
        )
        secrets = {"syncer-registry-credentials": {k8s.SECRET_KEY: k8s.docker_config(self.dst)}}
        workdir = self.tmp / f"pod-{len(self.pods)}"
        pod = k8s.start_pod(image, doc, {"syncer-config": config}, secrets, workdir)
        self.pods.append(pod)
        return pod


@pytest.fixture
def cluster(registry_factory: RegistryFactory, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(registry_factory, tmp_path)
    yield c
    for pod in c.pods:
        pod.remove()


def test_cronjob_copies_the_fleet_then_is_a_noop(image: BuiltImage, cluster: Cluster) -> None:
    docs = k8s.render(k8s.K8S / "base")
    pod = cluster.pod(image, docs["CronJob/syncer"], docs)
    assert pod.argv == ["syncer", "sync"] and pod.user == "65532:65532"
    first = pod.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert k8s.mirrored(cluster.fleet, cluster.dst) == k8s.EXPECTED
    mark = cluster.dst.mark()
    again = pod.run()
    assert again.returncode == 0, again.stderr
    assert k8s.writes(cluster.dst, mark) == []
    # Logs are JSON lines (SYNCER_LOG_FORMAT from the image), and the root stayed read-only.
    assert all(json.loads(line) for line in again.stderr.splitlines() if line.startswith("{"))
    # As root, so only a read-only mount (not file permissions) can refuse the write.
    where = " ".join(["/", "/usr/local/bin", "/etc", *pod.volumes])
    probe = f"for d in {where}; do touch $d/.probe 2>/dev/null && echo $d; done; true"
    writable = pod.container.run(["sh", "-c", probe], user="0:0").stdout.split()
    assert writable == ["/tmp"]  # the emptyDir: readOnly mounts and the root refuse


def test_cronjob_broken_config_fails_the_job(image: BuiltImage, cluster: Cluster) -> None:
    docs = k8s.render(k8s.K8S / "base")
    cron = docs["CronJob/syncer"]
    pod = cluster.pod(image, cron, docs, sync_yaml="version: 1\nsync: [{source: }]\n")
    out = pod.run()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "/etc/syncer/sync.yaml" in out.stderr
    (ctr,) = k8s.pod_spec(cron)["containers"]
    job = k8s.job_spec(cron)
    assert k8s.failure_action(job, ctr["name"], out.returncode) == "FailJob"
    assert k8s.failure_action(job, ctr["name"], 1) is None  # exit 1 is retried (backoffLimit)


def test_cronjob_sigterm_within_grace(
    image: BuiltImage, cluster: Cluster, fault_proxy_factory: FaultProxyFactory
) -> None:
    docs = k8s.render(k8s.K8S / "base")
    cron = docs["CronJob/syncer"]
    # The redis entry's source keeps failing, so the run is still busy (retrying) when the
    # kubelet's SIGTERM comes, after other tags were published.
    proxy = fault_proxy_factory(cluster.src, error_burst=(503, 10_000), error_paths="/redis/")
    pod = cluster.pod(image, cron, docs, src=behind(cluster.src, proxy))
    grace = k8s.pod_spec(cron).get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
    with pod.container.popen(
        pod.argv, user=pod.user, env=pod.env, log=cluster.tmp / "run.log"
    ) as p:
        wait_for_requests(cluster.dst, "PUT", "/manifests/", 1, timeout=60)
        assert p.proc.poll() is None, p.output()
        p.signal(signal.SIGTERM)
        started = time.monotonic()
        code = p.wait(timeout=grace)
        took = time.monotonic() - started
    assert code == 1, p.output()
    assert "stopped by SIGTERM" in p.output()
    print(f"SIGTERM to exit: {took:.2f}s (grace {grace}s)")
    partial = k8s.mirrored(cluster.fleet, cluster.dst)  # every tag there is complete
    assert "library/redis" not in partial
    proxy.error_burst = None
    done = pod.run()  # the next run finishes the job
    assert done.returncode == 0, done.stderr
    assert k8s.mirrored(cluster.fleet, cluster.dst) == k8s.EXPECTED


def test_scheduler_serves_probes_and_metrics_on_the_named_port(
    image: BuiltImage, cluster: Cluster
) -> None:
    docs = k8s.render(k8s.K8S / "overlays" / "scheduler")
    deploy = docs["Deployment/syncer-scheduler"]
    pod = cluster.pod(image, deploy, docs)
    named = {p["name"]: p["containerPort"] for p in pod.spec["ports"]}
    (svc_port,) = docs["Service/syncer-scheduler"]["spec"]["ports"]
    monitor = k8s.render(k8s.K8S / "overlays" / "monitoring")["ServiceMonitor/syncer-scheduler"]
    (endpoint,) = monitor["spec"]["endpoints"]
    port = named[svc_port["targetPort"]]
    assert named[endpoint["port"]] == port
    paths = {
        pod.spec[p]["httpGet"]["path"]: named[pod.spec[p]["httpGet"]["port"]]
        for p in ("livenessProbe", "readinessProbe")
    }
    with pod.container.popen(pod.argv, user=pod.user, env=pod.env, log=cluster.tmp / "s.log") as p:
        with http_client(timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    assert p.proc.poll() is None and time.monotonic() < deadline, p.output()
                    time.sleep(0.2)
            assert health.status_code == 200
            for path, probe_port in paths.items():
                assert client.get(f"http://127.0.0.1:{probe_port}{path}").status_code == 200
            metrics = client.get(f"http://127.0.0.1:{port}{endpoint['path']}")
            assert metrics.status_code == 200
            assert "syncer_schedule_period_seconds" in metrics.text
        p.signal(signal.SIGTERM)
        assert p.wait(timeout=k8s.pod_spec(deploy)["terminationGracePeriodSeconds"]) == 0


def test_sharded_job_copies_every_tag_exactly_once(image: BuiltImage, cluster: Cluster) -> None:
    docs = k8s.render(k8s.K8S / "overlays" / "sharded")
    cron = docs["CronJob/syncer"]
    job = k8s.job_spec(cron)
    assert job["completionMode"] == "Indexed"
    pods = [cluster.pod(image, cron, docs) for _ in range(job["completions"])]
    procs = []
    for index, pod in enumerate(pods):  # all at once, as parallelism == completions
        assert job["parallelism"] == job["completions"]
        env = {**pod.env, "JOB_COMPLETION_INDEX": str(index)}
        procs.append(
            subprocess.Popen(
                pod.container.argv(pod.argv, pod.user, env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=pod.container.env,
            )
        )
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    failing = {
        i: [line for line in out.splitlines() if not re.search(r'"level": "(info|debug)"', line)]
        for i, (p, out) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode != 0
    }
    assert not failing, failing  # their warnings and errors, not every line
    assert k8s.mirrored(cluster.fleet, cluster.dst) == k8s.EXPECTED
    tag_puts: dict[str, int] = {}
    for req in cluster.dst.requests():
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/?]+)", req.path)
        if req.method == "PUT" and m and not m[2].startswith("sha256:"):
            tag_puts[f"{m[1]}:{m[2]}"] = tag_puts.get(f"{m[1]}:{m[2]}", 0) + 1
    expected = {f"{k8s.MIRRORS[r]}:{t}" for r, tags in k8s.EXPECTED.items() for t in tags}
    assert tag_puts == dict.fromkeys(expected, 1)
    # Each pod checked only its own tags: a pod ignoring JOB_COMPLETION_INDEX would check all.
    finished = [
        json.loads(line)
        for out in outputs
        for line in out.splitlines()
        if line.startswith("{") and '"sync finished"' in line
    ]
    assert len(finished) == len(pods)
    assert (
        sum(f["tags_checked"] for f in finished)
        == sum(f["copied"] for f in finished)
        == len(expected)
    )
    assert sum(1 for f in finished if f["copied"]) > 1  # the work really was split


# --- 3. syncer mirrors its own image -----------------------------------------------


def test_image_travels_through_a_layout_and_a_registry(
    image: BuiltImage, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    env = image.env
    layout = tmp_path / "layout"
    ref = f"syncer:{VERSION}"
    container.engine("buildah", "push", image.name, f"oci:{layout}:{ref}", env=env)
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == ref
    reg = registry_factory("anon")
    target = f"{reg.host}/syncer:{VERSION}"
    layout.chmod(0o755)
    copier = container.Container(image, [Mount(layout, "/layout", True)], read_only_root=True)
    try:
        out = copier.run(["syncer", "copy", f"oci:/layout:{ref}", target])
    finally:
        copier.remove()
    assert out.returncode == 0, out.stdout + out.stderr
    pulled = container.engine("podman", "pull", "--tls-verify=false", target, env=env).split()[-1]
    try:
        digests = json.loads(
            container.engine(
                "podman", "image", "inspect", "--format", "{{json .RepoDigests}}", target, env=env
            )
        )
        digest = entry["digest"]
        assert fetch_manifest_digest(reg.url, "syncer", VERSION) == digest  # bytes kept
        assert f"{reg.host}/syncer@{digest}" in digests  # what podman pulled
        assert pulled == image.image_id  # the same config: the same image
    finally:
        container.engine("podman", "rmi", target, env=env)
    print(f"{image.name} -> oci:{layout} -> {target}: {digest}", file=sys.stderr)
