"""`keyless:` and `transparency_log:` models: what they accept, and each error's words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from syncer.config.keyfile import CONFIG_DIR
from syncer.config.keyless import KeylessPolicy, TlogPolicy, TrustedRootFile
from syncer.errors import ConfigError
from tests.support.sigstore_root import GITHUB_ISSUER, TRUSTED_ROOT, WORKFLOW, Sigstore

RULE = {"subject": WORKFLOW, "issuer": GITHUB_ISSUER}


def problems(data: dict[str, Any], base: Path | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        KeylessPolicy.model_validate(data, context={CONFIG_DIR: base} if base else None)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


def test_a_relative_trusted_root_is_found_beside_sync_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Sigstore().write_trusted_root(tmp_path / "root.json")
    monkeypatch.chdir("/")
    policy = KeylessPolicy.model_validate(
        {"trusted_root": "root.json", "identities": [RULE]}, context={CONFIG_DIR: tmp_path}
    )
    assert policy.trusted_root == TrustedRootFile("root.json", tmp_path / "root.json")
    assert policy.identities[0].subject == WORKFLOW
    assert policy.identities[0].subject_regex is None


def test_without_trusted_root_the_packaged_production_root_is_used() -> None:
    policy = KeylessPolicy.model_validate({"identities": [RULE]})
    assert policy.trusted_root is None
    urls = {ca.uri for ca in policy.load_root()._inner.certificate_authorities}
    assert "https://fulcio.sigstore.dev" in urls


def test_each_identity_needs_exactly_one_subject_and_a_valid_regex() -> None:
    both = {"subject": "a", "subject_regex": "a", "issuer": GITHUB_ISSUER}
    neither = {"issuer": GITHUB_ISSUER}
    bad = {"subject_regex": "team/(", "issuer": GITHUB_ISSUER}
    one_of = (
        "give exactly one of `subject` (the exact certificate identity) or "
        "`subject_regex` (a regex over the whole identity)"
    )
    found = problems({"identities": [both, neither, bad, {"subject": "a"}]})
    assert found == [
        ("identities.0", one_of),
        ("identities.1", one_of),
        (
            "identities.2",
            "invalid regex 'team/(': missing ), unterminated subpattern at position 5; "
            "e.g. 'https://github\\.com/org/.*'",
        ),
        ("identities.3.issuer", "Field required"),
    ]
    assert problems({"identities": []}) == [
        ("identities", "List should have at least 1 item after validation, not 0")
    ]
    assert problems({"identities": [RULE], "identity": "x"})[0][0] == "identity"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "trusted root 'root.json' not found; check the path"),
        ("dir", "'root.json' is a directory; expected a trusted root JSON file"),
        ("{", "'root.json' is not a usable Sigstore trusted root (Invalid JSON: EOF while"),
        (
            json.dumps({"mediaType": TRUSTED_ROOT, "tlogs": []}),
            "'root.json' is not a usable Sigstore trusted root (certificateAuthorities: Field "
            "required); expected protobuf-specs TrustedRoot JSON with",
        ),
        (
            json.dumps({**Sigstore().trusted_root(), "mediaType": "application/json"}),
            "'root.json' is not a usable Sigstore trusted root (mediaType: Input should be "
            f"'{TRUSTED_ROOT}' or 'application/vnd.dev.sigstore.trustedroot.v0.2+json')",
        ),
    ],
)
def test_an_unusable_trusted_root_names_its_path(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "root.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    found = problems({"trusted_root": "root.json", "identities": [RULE]}, tmp_path)
    assert [loc for loc, _ in found] == ["trusted_root"]
    assert found[0][1].startswith(message), found


def test_a_trusted_root_without_a_ct_log_is_not_usable(tmp_path: Path) -> None:
    root = Sigstore().trusted_root()
    root["ctlogs"] = []
    (tmp_path / "root.json").write_text(json.dumps(root))
    found = problems({"trusted_root": "root.json", "identities": [RULE]}, tmp_path)
    assert found == [
        (
            "trusted_root",
            "'root.json' is not a usable Sigstore trusted root (CTFE keys not found in "
            "trusted root); expected protobuf-specs TrustedRoot JSON with "
            "certificateAuthorities, ctlogs and tlogs, e.g. the output of "
            "`cosign trusted-root create`",
        )
    ]


def test_a_trusted_root_broken_after_load_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = Sigstore().write_trusted_root(tmp_path / "root.json")
    policy = KeylessPolicy.model_validate({"trusted_root": str(path), "identities": [RULE]})
    path.write_text("{}")
    with pytest.raises(ConfigError) as info:
        policy.load_root()
    assert str(info.value).startswith(
        f"verify.cosign.keyless.trusted_root: {str(path)!r} is not a usable Sigstore trusted root"
    )


def test_tlog_policy_needs_readable_public_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        TlogPolicy.model_validate({"keys": ["missing.pub"]}, context={CONFIG_DIR: tmp_path})
    assert info.value.errors()[0]["msg"] == "key file 'missing.pub' not found; check the path"
    with pytest.raises(ValidationError) as info:
        TlogPolicy.model_validate({"keys": []})
    assert info.value.errors()[0]["loc"] == ("keys",)
