"""The review app over HTTP (Starlette's TestClient, real database): token, CSRF, read-only, escaping,
decisions and apply, search, overview and export."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text
from starlette.routing import Route
from starlette.testclient import TestClient

from etlnorm.config import load_settings
from etlnorm.errors import ConfigError
from etlnorm.review.app import create_app
from etlnorm.review.security import CSRF_COOKIE, TOKEN_COOKIE, check_bind
from tests.review.conftest import HOSTILE, TWITCH, WOBBLY, rows_of
from tests.test_cli import assert_one_line_error, etlnorm

ATAXIA = "HP:0001251"
VIEW = "table=review.notes&column=term&ontology=hp&prefix=term_hp"


def client(**settings) -> TestClient:
    read_only = settings.pop("read_only", False)
    return TestClient(create_app(load_settings(**settings), read_only=read_only), follow_redirects=False)


def csrf_of(c: TestClient) -> str:
    """The CSRF token the page hands this client (cookie and form field are the same value)."""
    page = c.get("/")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def curations(engine, term: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT decision, id, curator FROM etlnorm.curation"
                                                    " WHERE ontology = 'hp' AND term = :t ORDER BY seq"), {"t": term})]


def test_binding_off_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "secret")
    with pytest.raises(ConfigError, match="needs a token"):
        check_bind("0.0.0.0", None)
    refused = etlnorm("review", "serve", "--host", "0.0.0.0")
    assert_one_line_error(refused, "needs a token")
    assert refused.stdout == ""


def test_a_token_is_checked_on_every_request(engine, review_target):
    c = client(review_token="s3cret")
    for path in ("/", "/overview", "/search?ontology=hp&q=ataxia", "/export/sssom?ontology=hp", "/static/review.js"):
        assert c.get(path).status_code == 401, path
    assert c.post("/decide", data={}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    link = c.get("/overview?token=s3cret")  # a shared link: the token moves into a cookie, out of the URL
    assert link.status_code == 303 and link.headers["location"] == "/overview"
    assert c.cookies.get(TOKEN_COOKIE) == "s3cret" and c.get("/overview").status_code == 200


def test_every_form_needs_the_csrf_token(engine, review_target):
    c = client()
    token = csrf_of(c)
    c.post("/curator", data={"csrf": token, "curator": "ada"})
    posts = [r.path for r in c.app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert sorted(posts) == ["/apply", "/curator", "/decide"]
    form = {"action": "accept", "ontology": "hp", "term": WOBBLY, "id": ATAXIA, "view": VIEW, "curator": "mallory",
            "table": "review.notes", "column": "term", "prefix": "term_hp"}  # fmt: skip
    for path in posts:
        assert c.post(path, data=form).status_code == 403, path  # no field
        assert c.post(path, data={**form, "csrf": token[::-1]}).status_code == 403, path  # a wrong one
    stranger = client()  # another client's cookie does not match this token
    assert stranger.post("/decide", data={**form, "csrf": token}).status_code == 403
    assert curations(engine, WOBBLY) == []
    page = c.get("/?" + VIEW)
    assert page.headers["x-frame-options"] == "DENY" and "script-src 'self'" in page.headers["content-security-policy"]


def test_read_only_shows_the_queue_and_refuses_changes(engine, review_target):
    c = client(read_only=True)
    page = c.get("/?" + VIEW)
    assert page.status_code == 200 and WOBBLY in page.text and "read-only" in page.text
    assert 'action="/decide"' not in page.text and 'action="/apply"' not in page.text
    token = c.cookies[CSRF_COOKIE]
    done = c.post("/decide", data={"csrf": token, "action": "set", "ontology": "hp", "term": WOBBLY, "id": ATAXIA})
    assert done.status_code == 403 and "read-only" in done.text
    assert curations(engine, WOBBLY) == []


def test_every_value_is_escaped(engine, review_target):
    page = client().get("/?" + VIEW).text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; fits" in page
    assert "<script>alert" not in page
    with engine.begin() as conn:  # a hostile method name reaches the overview's chart legend
        conn.execute(text("UPDATE etlnorm.run SET methods = methods || '{\"<b>m</b>\": 1}'::jsonb"
                          " WHERE table_name = 'review.notes'"))  # fmt: skip
    overview = client().get("/overview").text
    assert "&lt;b&gt;m&lt;/b&gt;" in overview and "<b>m</b>" not in overview


def test_decide_then_apply_over_http(engine, review_target):
    c = client()
    token = csrf_of(c)
    nameless = c.post("/decide", data={"csrf": token, "action": "set", "ontology": "hp", "term": WOBBLY, "id": ATAXIA,
                                       "view": VIEW})  # fmt: skip
    assert "give+your+name" in nameless.headers["location"] and curations(engine, WOBBLY) == []
    c.post("/curator", data={"csrf": token, "curator": "ada"})
    done = c.post("/decide", data={"csrf": token, "action": "set", "ontology": "hp", "term": WOBBLY, "id": ATAXIA,
                                   "synonym": "1", "view": VIEW})  # fmt: skip
    assert done.status_code == 303 and done.headers["location"].startswith("/?" + VIEW)
    assert curations(engine, WOBBLY) == [("set-id", ATAXIA, "ada")]
    page = c.get("/?" + VIEW).text
    assert 'class="pending-row"' in page and "apply now" in page
    applied = c.post("/apply", data={"csrf": token, "view": VIEW, "table": "review.notes", "column": "term",
                                     "ontology": "hp", "prefix": "term_hp", "term": WOBBLY})  # fmt: skip
    assert applied.status_code == 303 and "rows+updated" in applied.headers["location"]
    assert rows_of(engine, WOBBLY) == {(ATAXIA, "curated", 1.0)}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM etlnorm.user_synonym WHERE ontology = 'hp' AND text = :t"),
                            {"t": WOBBLY}).scalar() == ATAXIA  # fmt: skip
    bad = c.post("/decide", data={"csrf": token, "action": "set", "ontology": "hp", "term": TWITCH, "id": "HP:9999999",
                                  "view": VIEW})  # fmt: skip
    assert "error=" in bad.headers["location"] and "not+a+current+hp+term" in bad.headers["location"]


def test_search_overview_and_export(engine, review_target):
    c = client()
    found = c.get("/search", params={"ontology": "hp", "term": WOBBLY, "q": "Ataxia"}).text
    assert ATAXIA in found and "lexical" in found and 'name="csrf"' in found
    assert "HP:0001250" in c.get("/search", params={"ontology": "hp", "term": HOSTILE, "q": "HP:0001250"}).text
    with engine.begin() as conn:  # as a Prefect flow records it
        flow_run = conn.execute(text("UPDATE etlnorm.run SET flow_run_id = gen_random_uuid() WHERE run_id = (SELECT"
                                     " run_id FROM etlnorm.run WHERE table_name = 'review.notes' ORDER BY started_at"
                                     " DESC LIMIT 1) RETURNING flow_run_id")).scalar()  # fmt: skip
    overview = c.get("/overview").text
    with engine.begin() as conn:  # no made-up flow run outlives this test
        conn.execute(text("UPDATE etlnorm.run SET flow_run_id = NULL WHERE flow_run_id = :f"), {"f": flow_run})
    assert "review.notes.term (hp, term_hp_*)" in overview and overview.count("<svg") >= 2
    assert f'href="http://127.0.0.1:4200/runs/flow-run/{flow_run}"' in overview
    export = c.get("/export/sssom", params={"ontology": "hp", "table": "review.notes", "column": "term"})
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert "subject_label" in export.text and "sssom:NoTermFound" in export.text and "HP:0001250" in export.text
    assert c.get("/?table=nope&column=term&ontology=hp&prefix=x").status_code == 400
