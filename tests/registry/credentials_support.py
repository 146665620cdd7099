"""A docker config dir with fake docker-credential-* helpers, for the credentials tests."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

HUB_KEY = "https://index.docker.io/v1/"
SECRET = "s3cr3t:with:colons"

# A docker-credential-* helper speaking the real protocol, backed by a JSON file per
# helper name. It logs its argv so tests can prove no secret was passed there.
FAKE_HELPER = """\
import json, os, sys
name = os.path.basename(sys.argv[0])
state = os.environ["FAKE_HELPER_STATE"]
data = sys.stdin.read()
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(json.dumps({"helper": name, "argv": sys.argv}) + "\\n")
mode = os.environ.get("FAKE_HELPER_MODE", "")
if mode == "echo-fail":  # a careless helper repeating the secret in an error
    print("keyring locked, cannot save " + json.loads(data)["Secret"])
    sys.exit(3)
if mode == "payload-fail":  # prints something credential-shaped, then fails
    print(json.dumps({"ServerURL": "x", "Username": "u", "Secret": "leaked-secret"}))
    sys.exit(1)
if mode == "garbage":
    print("not json leaked-secret")
    sys.exit(0)
db_path = os.path.join(state, name + ".json")
db = json.load(open(db_path)) if os.path.exists(db_path) else {}
action = sys.argv[1]
url = json.loads(data)["ServerURL"] if action == "store" else data.strip()
with open(os.path.join(state, "urls.log"), "a") as log:
    log.write(action + " " + url + "\\n")
if action == "store":
    req = json.loads(data)
    db[url] = [req["Username"], req["Secret"]]
elif url not in db:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    print(json.dumps({"ServerURL": url, "Username": db[url][0], "Secret": db[url][1]}))
else:
    del db[url]
json.dump(db, open(db_path, "w"))
"""


@dataclass
class Env:
    config_dir: Path
    state: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    def write_config(self, data: dict[str, Any]) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(data), encoding="utf-8")

    def read_config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config_file.read_text(encoding="utf-8"))
        return data

    def seed(self, helper: str, url: str, username: str, secret: str) -> None:
        path = self.state / f"docker-credential-{helper}.json"
        db = json.loads(path.read_text()) if path.exists() else {}
        db[url] = [username, secret]
        path.write_text(json.dumps(db))

    def helper_db(self, helper: str) -> dict[str, list[str]]:
        path = self.state / f"docker-credential-{helper}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def urls(self) -> list[str]:
        log = self.state / "urls.log"
        return log.read_text().splitlines() if log.exists() else []

    def argv_log(self) -> str:
        log = self.state / "calls.log"
        return log.read_text() if log.exists() else ""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
