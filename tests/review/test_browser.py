"""The review page in a real browser: Debian's headless Chromium driven by Playwright (the driver
only; no browser download). The server runs on a free port against the test database; the test
accepts a candidate, rejects another, sets a third term by search, applies, and checks
``etlnorm.curation`` and the table. It also takes the README's screenshots."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from etlnorm.config import load_settings
from etlnorm.review.app import create_app
from tests.review.conftest import HOSTILE, TWITCH, WOBBLY, rows_of

CHROMIUM = os.environ.get("ETLNORM_CHROMIUM", "/usr/bin/chromium")
# The README's screenshots are retaken into docs/ with ETLNORM_UPDATE_SCREENSHOTS=1; otherwise they
# are taken into the test's own folder, so a test run leaves the checkout as it was.
DOCS = Path(__file__).resolve().parents[2] / "docs"
ATAXIA = "HP:0001251"
VIEW = "table=review.notes&column=term&ontology=hp&prefix=term_hp"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium package", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(review_target) -> Iterator[str]:
    """``etlnorm review serve``'s app under uvicorn in a thread, on a free port of 127.0.0.1."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(load_settings()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "review server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def item(page, term: str):
    return page.locator("section.item").filter(has=page.get_by_text(term, exact=True))


def snapshot(page, folder: Path, name: str) -> None:
    """A screenshot of the whole page, by growing the viewport to it (a full_page capture leaves
    Chromium's later clicks below the fold missing their target)."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": page.evaluate("document.documentElement.scrollHeight")})
    page.screenshot(path=str(folder / name))
    assert (folder / name).stat().st_size > 10_000  # a rendered page, not a blank one
    page.set_viewport_size(size)


def submit(page, button) -> None:
    """Click a form's button and wait for the page the POST redirects to."""
    with page.expect_navigation():
        button.click()


def test_curate_in_the_browser(engine, server, page, tmp_path):
    shots = DOCS if os.environ.get("ETLNORM_UPDATE_SCREENSHOTS") == "1" else tmp_path
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server}/?{VIEW}")
    page.fill("input[name=curator]", "Ada Curator")
    submit(page, page.locator("form.curator button"))
    assert "decisions are recorded as Ada Curator" in page.inner_text("p.note")

    # The hostile term is shown as text, and nothing ran.
    assert item(page, HOSTILE).locator("h3 .term").inner_text() == HOSTILE
    assert dialogs == []

    accepted = item(page, WOBBLY).locator("li.candidate").first.get_attribute("data-id")
    submit(page, item(page, WOBBLY).locator("button.accept").first)
    rejected = item(page, TWITCH).locator("li.candidate").first.get_attribute("data-id")
    submit(page, item(page, TWITCH).locator("button.reject").first)
    box = item(page, HOSTILE).locator("input.search")
    box.press_sequentially("Ataxia", delay=40)  # typed: the debounced search asks once the typing pauses
    found = item(page, HOSTILE).locator(".results button.set", has_text=ATAXIA)
    found.wait_for()
    snapshot(page, shots, "review-queue.png")  # the queue with two decisions pending and the search box's results
    submit(page, found)

    pending = page.locator("tr.pending-row")
    assert sorted(pending.evaluate_all("rows => rows.map(r => r.dataset.term)")) == sorted([WOBBLY, TWITCH, HOSTILE])
    assert dialogs == []

    submit(page, page.locator("button.apply-all"))
    assert "rows updated" in page.inner_text("p.note")
    assert page.locator("tr.pending-row").count() == 0
    with engine.connect() as conn:
        decided = conn.execute(text("SELECT term, decision, id, curator FROM etlnorm.curation WHERE ontology = 'hp'"
                                    " AND term = ANY(:t) ORDER BY seq"), {"t": [WOBBLY, TWITCH, HOSTILE]}).all()  # fmt: skip
    assert [tuple(r) for r in decided] == [(WOBBLY, "set-id", accepted, "Ada Curator"),
                                           (TWITCH, "reject", rejected, "Ada Curator"),
                                           (HOSTILE, "set-id", ATAXIA, "Ada Curator")]  # fmt: skip
    assert rows_of(engine, WOBBLY) == {(accepted, "curated", 1.0)}
    assert rows_of(engine, HOSTILE) == {(ATAXIA, "curated", 1.0)}
    assert all(ident != rejected for ident, _, _ in rows_of(engine, TWITCH))
    assert item(page, TWITCH).locator("li.candidate.rejected").get_attribute("data-id") == rejected

    page.goto(f"{server}/overview")
    assert page.locator("table.coverage svg").count() >= 2 and "review.notes.term" in page.inner_text("table.coverage")
    snapshot(page, shots, "review-overview.png")
    assert dialogs == []
