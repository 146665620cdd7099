"""Each sender kind's payload, parsed from real or documented bodies; and its authentication."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from syncer.config.events import SenderKind
from syncer.service.events import distribution, dockerhub, ghcr, harbor, quay
from syncer.service.events.auth import authentic
from syncer.service.events.model import Action, BadEvent, Event

PARSERS = {
    SenderKind.DISTRIBUTION: distribution.parse,
    SenderKind.HARBOR: harbor.parse,
    SenderKind.DOCKERHUB: dockerhub.parse,
    SenderKind.GHCR: ghcr.parse,
    SenderKind.QUAY: quay.parse,
}
DATA = Path(__file__).resolve().parents[1] / "data" / "events"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_bytes())


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        (
            SenderKind.DISTRIBUTION,
            "distribution-push-manifest.json",
            [
                Event(
                    "team/app",
                    "v1",
                    Action.PUSH,
                    "sha256:2011" + "64c36309c45e0af2f21760d06d34c9bae70b21682ddfa762ed9aa495bcf5",
                )
            ],
        ),
        (
            SenderKind.DISTRIBUTION,
            "distribution-push-index.json",
            [
                Event(
                    "team/app",
                    "multi",
                    Action.PUSH,
                    "sha256:8ede2a4d52ce41519da7f092bfe3140b2cc58ece5d094dc03f4810855fcdca29",
                )
            ],
        ),
        (SenderKind.DISTRIBUTION, "distribution-push-blob.json", []),
        (SenderKind.DISTRIBUTION, "distribution-pull.json", []),
        (
            SenderKind.DISTRIBUTION,
            "distribution-delete-tag.json",
            [Event("team/app", "v1", Action.DELETE)],
        ),
        (
            SenderKind.HARBOR,
            "harbor-push-artifact.json",
            [
                Event(
                    "library/alpine",
                    "latest",
                    Action.PUSH,
                    "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
                )
            ],
        ),
        (SenderKind.HARBOR, "harbor-pull-artifact.json", []),
        (SenderKind.DOCKERHUB, "dockerhub-push.json", [Event("svendowideit/testhook", "latest")]),
        (
            SenderKind.GHCR,
            "ghcr-package-published.json",
            [
                Event(
                    "octo-org/hello-world",
                    "1.2.0",
                    Action.PUSH,
                    "sha256:3f5d7b2f1c0b4e5c8a1f0f0b3a8d1f5e2c6b7a9d0e1f2a3b4c5d6e7f8a9b0c1d",
                )
            ],
        ),
        (
            SenderKind.GHCR,
            "ghcr-registry-package-published.json",
            [
                Event(
                    "octo-org/hello-world",
                    "1.2.0",
                    Action.PUSH,
                    "sha256:3f5d7b2f1c0b4e5c8a1f0f0b3a8d1f5e2c6b7a9d0e1f2a3b4c5d6e7f8a9b0c1d",
                )
            ],
        ),
        (SenderKind.QUAY, "quay-repository-push.json", [Event("dgangaia/test", "latest")]),
    ],
)
def test_documented_payloads_parse(kind: SenderKind, name: str, expected: list[Event]) -> None:
    assert PARSERS[kind](load(name)) == expected


def test_distribution_envelope_is_the_v1_media_type() -> None:
    from syncer.service.events.distribution import MEDIA_TYPE

    assert MEDIA_TYPE == "application/vnd.docker.distribution.events.v1+json"
    # A blob push (mediaType application/octet-stream) comes before its manifest: ignored.
    assert load("distribution-push-blob.json")["events"][0]["target"]["mediaType"] == (
        "application/octet-stream"
    )


def test_harbor_push_by_digest_moves_no_tag_and_delete_keeps_the_repository() -> None:
    doc = load("harbor-push-artifact.json")
    resource = doc["event_data"]["resources"][0]
    resource["tag"] = resource["digest"]  # what Harbor sends for a push by digest
    assert PARSERS[SenderKind.HARBOR](doc) == []
    doc["type"] = "DELETE_ARTIFACT"
    assert PARSERS[SenderKind.HARBOR](doc) == [
        Event("library/alpine", None, Action.DELETE, resource["digest"])
    ]


def test_ghcr_ignores_other_packages_and_quay_old_tag_maps() -> None:
    doc = load("ghcr-package-published.json")
    doc["package"]["package_type"] = "npm"
    assert PARSERS[SenderKind.GHCR](doc) == []
    assert PARSERS[SenderKind.QUAY]({"repository": "a/b", "updated_tags": {"1.0": "abc"}}) == [
        Event("a/b", "1.0")
    ]
    assert PARSERS[SenderKind.DOCKERHUB]({"repository": {"repo_name": "a/b"}, "push_data": {}}) == [
        Event("a/b", None)
    ]


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (SenderKind.DISTRIBUTION, {}, "events is missing"),
        (SenderKind.DISTRIBUTION, {"events": {}}, "events is not a list"),
        (
            SenderKind.DISTRIBUTION,
            {"events": [{"action": "push", "target": {"tag": "v1"}}]},
            "events[0].target.repository is missing",
        ),
        (
            SenderKind.DISTRIBUTION,
            {"events": [{"action": "push", "target": {"repository": "a", "tag": "bad tag"}}]},
            "events[0].target.tag",
        ),
        (SenderKind.HARBOR, {"type": "PUSH_ARTIFACT"}, "event_data is missing"),
        (SenderKind.DOCKERHUB, {"push_data": {"tag": "x"}}, "repository is missing"),
        (SenderKind.GHCR, [], "body is not an object"),
        (SenderKind.QUAY, {"repository": ""}, "repository is not a non-empty string"),
    ],
)
def test_bodies_of_the_wrong_shape_are_bad_events(
    kind: SenderKind, body: Any, message: str
) -> None:
    with pytest.raises(BadEvent, match=message.replace("[", r"\[").replace("]", r"\]")):
        PARSERS[kind](body)


def test_authentication_per_kind() -> None:
    secret = b"s3cret"
    body = (DATA / "ghcr-package-published.json").read_bytes()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert authentic(SenderKind.GHCR, secret, {"X-Hub-Signature-256": signature}, None, body)
    assert not authentic(
        SenderKind.GHCR, secret, {"X-Hub-Signature-256": signature}, None, body + b" "
    )
    assert not authentic(SenderKind.GHCR, secret, {}, None, body)
    for kind in (SenderKind.DISTRIBUTION, SenderKind.HARBOR):
        assert authentic(kind, secret, {"Authorization": "Bearer s3cret"}, None)
        assert not authentic(kind, secret, {"Authorization": "Bearer s3cre"}, None)
        assert not authentic(kind, secret, {"Authorization": "Basic s3cret"}, None)
        assert not authentic(kind, secret, {}, "s3cret")  # a path secret is no token
    for kind in (SenderKind.DOCKERHUB, SenderKind.QUAY):
        assert authentic(kind, secret, {}, "s3cret")
        assert not authentic(kind, secret, {}, "s3cret2")
        assert not authentic(kind, secret, {"Authorization": "Bearer s3cret"}, None)
