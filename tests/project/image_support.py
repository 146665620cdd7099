"""Rendered Kubernetes objects -> a container run of the built image, as a kubelet would.

Everything a pod gets is read from the rendered object, never from a copy: the argv
(`command`/`args` over the image's ENTRYPOINT/CMD), `env`, the user (`runAsUser`/`runAsGroup`,
the container's over the pod's), `volumeMounts` with their volumes (a ConfigMap's keys as
files, a Secret's `items` with `defaultMode`, both group-owned by `fsGroup`; an `emptyDir` as
a fresh writable folder) and `readOnlyRootFilesystem`.

sync.yaml is the rendered ConfigMap's, with only its registry hosts substituted (docker.io ->
the source registry, registry.example.com -> the destination): the tag filters, platforms and
per-registry settings under test are the deployed ones. The fleet below is made to exercise
those filters, and `EXPECTED` says by hand which tags they keep.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from tests.support import tools
from tests.support.container import BuiltImage, Container, Mount
from tests.support.fleet import Fleet, tag_item
from tests.support.http import http_client
from tests.support.images import MANIFEST_ACCEPT, Image, Index, fetch_manifest_digest
from tests.support.registry import RunningRegistry

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SECRET_KEY = ".dockerconfigjson"
# The ConfigMap's hosts, and the destination repository of each source repository.
SOURCE_HOST, DEST_HOST = "docker.io", "registry.example.com"
MIRRORS = {
    "library/alpine": "mirror/alpine",
    "library/nginx": "mirror/nginx",
    "library/redis": "mirror/redis",
}
TAGS = {
    "library/alpine": ["3.19", "3.20", "latest", "3.21-rc1", "edge"],
    "library/nginx": [
        *("1.25.5-alpine", "1.26.0-alpine", "1.26.2-alpine", "1.27.0-alpine"),
        *("1.27.1-alpine", "1.27.1", "mainline-alpine"),
    ],
    "library/redis": ["7.4-alpine", "7.2-alpine", "latest"],
}
# What the ConfigMap's filters keep: alpine `3\.\d+` or latest, no -rc; nginx the newest 3
# of >=1.26 with the -alpine suffix; redis the one tag its source names.
EXPECTED = {
    "library/alpine": {"3.19", "3.20", "latest"},
    "library/nginx": {"1.26.2-alpine", "1.27.0-alpine", "1.27.1-alpine"},
    "library/redis": {"7.4-alpine"},
}


render = tools.kustomize


def job_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]
    return spec["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else spec


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = job_spec(doc) if doc["kind"] in ("CronJob", "Job") else doc["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def make_fleet() -> Fleet:
    fleet = Fleet()
    for r, (repo, tags) in enumerate(TAGS.items()):
        fleet.repos[repo] = {tag: tag_item(r, t) for t, tag in enumerate(tags)}
    return fleet


def sync_yaml(configmap: dict[str, Any], src: RunningRegistry, dst: RunningRegistry) -> str:
    """The ConfigMap's sync.yaml with its two registry hosts pointed at the loopback ones."""
    text: str = configmap["data"]["sync.yaml"]
    for host, reg in ((SOURCE_HOST, src), (DEST_HOST, dst)):
        assert re.search(rf"\b{re.escape(host)}\b", text), host
        text = re.sub(rf"\b{re.escape(host)}\b", reg.host, text)
    return text


def docker_config(*regs: RunningRegistry) -> str:
    auths = {}
    for reg in regs:
        if reg.username and reg.password:
            token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
            auths[reg.host] = {"auth": token}
    return json.dumps({"auths": auths})


def mirrored(fleet: Fleet, dst: RunningRegistry) -> dict[str, set[str]]:
    """Source repository -> tags at the destination, each checked complete and identical."""
    found: dict[str, set[str]] = {}
    with http_client(timeout=30) as client:
        for repo, tags in fleet.repos.items():
            for tag, item in tags.items():
                got = fetch_manifest_digest(dst.seed_url, MIRRORS[repo], tag, client=client)
                if got is None:
                    continue
                if got != item.digest:
                    assert_filtered_copy(client, dst, MIRRORS[repo], tag, item)
                for blob in item.blobs():
                    head = client.head(f"{dst.seed_url}/v2/{MIRRORS[repo]}/blobs/{blob.digest}")
                    assert head.status_code == 200, (repo, tag, blob.digest)
                found.setdefault(repo, set()).add(tag)
    return found


def assert_filtered_copy(
    client: httpx.Client, dst: RunningRegistry, repo: str, tag: str, item: Image | Index
) -> None:
    """The ConfigMap lists platforms, so an index arrives as syncer's filtered index
    (docs/configuration.md, "Platforms"): made from this source digest, with every child our
    fleet's indexes have."""
    resp = client.get(
        f"{dst.seed_url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
    )
    raw = resp.json()
    assert isinstance(item, Index), (repo, tag, "an image must arrive unchanged")
    assert raw["annotations"]["io.syncer.source.digest"] == item.digest, (repo, tag)
    assert [m["digest"] for m in raw["manifests"]] == [c.digest for c in item.children]
    for child in item.children:
        assert fetch_manifest_digest(dst.seed_url, repo, child.digest, client=client)


def writes(reg: RunningRegistry, since: int = 0) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in reg.requests_since(since)
        if r.method in ("PUT", "POST", "PATCH", "DELETE")
    ]


def failure_action(job: dict[str, Any], container: str, exit_code: int) -> str | None:
    """What the Job's podFailurePolicy does with a pod whose container exited so."""
    for rule in job.get("podFailurePolicy", {}).get("rules", []):
        on = rule.get("onExitCodes")
        if on is None or on.get("containerName", container) != container:
            continue
        inside = exit_code in on["values"]
        if inside == (on["operator"] == "In"):
            return str(rule["action"])
    return None


@dataclass
class Pod:
    """One container of a rendered pod, ready to run in the built image."""

    container: Container
    spec: dict[str, Any]  # the rendered container
    pod: dict[str, Any]
    user: str
    env: dict[str, str]
    argv: list[str]
    volumes: dict[str, Path]  # mountPath -> host folder

    def run(self, *, extra_env: dict[str, str] | None = None, timeout: float = 120) -> Any:
        return self.container.run(
            self.argv, user=self.user, env={**self.env, **(extra_env or {})}, timeout=timeout
        )

    def remove(self) -> None:
        self.container.remove()


def env_value(
    var: dict[str, Any],
    configmaps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
) -> str | None:
    """An `env:` item's value as the kubelet resolves it; None for an optional reference
    to a ConfigMap or Secret that does not exist (the variable is then unset)."""
    if "value" in var:
        return str(var["value"])
    source = var["valueFrom"]
    for kind, store in (("secretKeyRef", secrets), ("configMapKeyRef", configmaps)):
        if kind in source:
            ref = source[kind]
            found = store.get(ref["name"], {}).get(ref["key"])
            assert found is not None or ref.get("optional"), f"{var['name']}: {ref} missing"
            return found
    raise AssertionError(f"env source of {var['name']} not handled here: {source}")


def start_pod(
    image: BuiltImage,
    doc: dict[str, Any],
    configmaps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
    workdir: Path,
) -> Pod:
    pod = pod_spec(doc)
    (spec,) = pod["containers"]
    psc, csc = pod.get("securityContext", {}), spec.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
    assert uid is not None and gid is not None, "the manifest must name the user"
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        assert uid != 0
    fs_group = psc.get("fsGroup")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: list[Mount] = []
    folders: dict[str, Path] = {}
    for i, vm in enumerate(spec.get("volumeMounts", [])):
        volume = volumes[vm["name"]]
        folder = workdir / f"volume-{i}-{vm['name']}"
        folder.mkdir(parents=True)
        if "configMap" in volume:
            data = configmaps[volume["configMap"]["name"]]
            fill(folder, data, volume["configMap"], fs_group, default_mode=0o644)
        elif "secret" in volume:
            data = secrets[volume["secret"]["secretName"]]
            fill(folder, data, volume["secret"], fs_group, default_mode=0o644)
        elif "emptyDir" in volume:
            folder.chmod(0o777)  # what the kubelet gives an emptyDir
        else:
            raise AssertionError(f"volume type of {volume} not handled here")
        mounts.append(Mount(folder, vm["mountPath"], bool(vm.get("readOnly"))))
        folders[vm["mountPath"]] = folder
    # A nested mount (the Secret inside the ConfigMap's folder) needs its mount point in the
    # outer volume, as the kubelet makes it.
    for outer in mounts:
        for inner in mounts:
            target = PurePosixPath(inner.target)
            if inner is not outer and target.is_relative_to(outer.target):
                (outer.source / target.relative_to(outer.target)).mkdir(parents=True, exist_ok=True)
    env = {
        e["name"]: value
        for e in spec.get("env", [])
        if (value := env_value(e, configmaps, secrets)) is not None
    }
    config = image.config
    entrypoint = list(spec.get("command") or config.get("Entrypoint") or [])
    args = spec.get("args")
    if args is None:
        args = [] if spec.get("command") else list(config.get("Cmd") or [])
    container = Container(image, mounts, read_only_root=bool(csc.get("readOnlyRootFilesystem")))
    return Pod(container, spec, pod, f"{uid}:{gid}", env, [*entrypoint, *args], folders)


def fill(
    folder: Path,
    data: dict[str, str],
    source: dict[str, Any],
    fs_group: int | None,
    *,
    default_mode: int,
) -> None:
    """A ConfigMap or Secret volume: its keys (or `items`) as files, mode and group as set."""
    mode = source.get("defaultMode", default_mode)
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    for item in items:
        path = folder / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]], encoding="utf-8")
        path.chmod(item.get("mode", mode))
        if fs_group is not None:
            os.chown(path, 0, fs_group)
    if fs_group is not None:
        os.chown(folder, 0, fs_group)
