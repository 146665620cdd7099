"""The status page of `syncer schedule` (GET / and /status.json), seen by a real browser."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from syncer.service.http import StatusServer
from syncer.service.scheduler import Scheduler
from syncer.service.status import GroupRun, StatusBoard
from syncer.sync.report import EntryReport
from syncer.sync.runner import RunOptions
from tests.support import browser
from tests.support.fleet import make_fleet
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[2]
DOC_SCREENSHOT = ROOT / "docs" / "status-page.png"
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>\"'&"


def shown(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC")


def text_of(dom: str) -> str:
    """Visible text of a serialized DOM: tags dropped, entities decoded, spaces squeezed."""
    body = re.sub(r"<(style|head)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


async def test_status_page_after_a_real_run(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(2, 3)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/mirror/{r}"} for r in fleet.repos
    ]
    entries.append({"source": f"{src.host}/fleet/gone", "destination": f"{dst.host}/mirror/gone"})
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst, defaults={"interval": "1h"})
    sched = Scheduler(cfg, RunOptions(), run_now=True)
    task = asyncio.create_task(sched.run(metrics_port=0, metrics_host="127.0.0.1"))
    try:
        for _ in range(400):
            await asyncio.sleep(0.05)
            if sched.runs_finished:
                break
        assert sched.runs_finished == 1
        base = f"http://127.0.0.1:{sched.metrics_port}"
        async with httpx.AsyncClient() as c:
            page = await c.get(f"{base}/")
            doc = (await c.get(f"{base}/status.json")).json()
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert not re.search(r"<script|src=|href=\"(https?:)?//", page.text)  # nothing external

        rows = {r["source"]: r for r in doc["entries"]}
        assert set(rows) == {e["source"] for e in entries}
        for repo in fleet.repos:
            row = rows[f"{src.host}/{repo}"]
            assert row["status"] == "ok"
            assert (row["tags_copied"], row["tags_failed"], row["tags_deferred"]) == (3, 0, 0)
            assert row["last_error"] == ""
        gone = rows[f"{src.host}/fleet/gone"]
        assert gone["status"] == "failed"
        assert gone["tags_copied"] == 0
        assert "fleet/gone" in gone["last_error"]
        last = datetime.fromisoformat(gone["last_run"])
        nxt = datetime.fromisoformat(gone["next_run"])
        assert abs(datetime.now(UTC) - last) < timedelta(minutes=1)
        assert timedelta(minutes=59) < nxt - last <= timedelta(hours=1, seconds=5)

        # In a thread: the server answering chromium runs on this event loop.
        dom = await asyncio.to_thread(browser.dump_dom, f"{base}/", tmp_path / "profile")
        text = text_of(dom)
        for repo in fleet.repos:
            # source, destination, status, finished, next run, copied, failed, deferred
            row = rows[f"{src.host}/{repo}"]
            assert (
                f"{src.host}/{repo} {dst.host}/mirror/{repo} ok {shown(row['last_run'])} "
                f"{shown(row['next_run'])} 3 0 0"
            ) in text
        assert f"{src.host}/fleet/gone {dst.host}/mirror/gone failed" in text
        assert gone["last_error"] in text

        shot = tmp_path / "status-page.png"
        size = (1400, 360)
        await asyncio.to_thread(browser.screenshot, f"{base}/", tmp_path / "profile", shot, size)
        assert browser.png_size(shot) == size
        assert shot.stat().st_size > 10_000  # a rendered table, not a blank page
        if os.environ.get("SYNCER_WRITE_DOCS") == "1" or not DOC_SCREENSHOT.exists():
            DOC_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOC_SCREENSHOT)
    finally:
        sched.stop()
        await task


async def test_every_value_is_escaped_in_the_browser(tmp_path: Path) -> None:
    """Names and errors come from remote registries: they must stay text."""
    board = StatusBoard(lambda group: None)
    entry = EntryReport(f"reg.example/{HOSTILE}", f"mirror.example/{HOSTILE}")
    entry.fail("v1<b>", HOSTILE)
    board.record(GroupRun("g", HOSTILE, (), (entry,), datetime.now(UTC)))
    server = StatusServer(
        {"/": lambda: ("text/html; charset=utf-8", board.to_html())}, lambda: True
    )
    port = await server.start("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{port}/"
        dom = await asyncio.to_thread(browser.dump_dom, url, tmp_path / "profile")
    finally:
        await server.stop()
    assert "<title>syncer status</title>" in dom  # the script neither exists nor ran
    assert "<script" not in dom and "<img" not in dom and "<b>" not in dom
    text = text_of(dom)
    assert f"reg.example/{HOSTILE} mirror.example/{HOSTILE} failed" in text
    assert f"v1<b>: {HOSTILE}" in text


def test_html_escapes_without_a_browser() -> None:
    board = StatusBoard(lambda group: None)
    entry = EntryReport(HOSTILE, '"><x y="')
    entry.fail(None, HOSTILE)
    board.record(GroupRun("g", "every 60s", (), (entry,), datetime.now(UTC)))
    page = board.to_html().decode()
    assert "<script>" not in page and "<img" not in page and '"><x' not in page
    assert html.escape(HOSTILE, quote=True) in page
    assert "&quot;&gt;&lt;x y=&quot;" in page


@pytest.mark.parametrize("path", ["/nope", "/status.json/../metrics"])
async def test_unknown_paths_are_404(path: str) -> None:
    server = StatusServer({"/": lambda: ("text/html", b"x")}, lambda: True)
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}{path}")
    finally:
        await server.stop()
    assert r.status_code == 404
