"""The judgment inspector end to end: real chromium, real service, bundled model. Each view is
screenshotted into the artifacts folder (tests/ui/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RealServer
from tests.ui.conftest import API_KEY

pytestmark = [pytest.mark.engine, pytest.mark.redis, pytest.mark.ui]

# Small budgets: a forced verdict after 8 thinking tokens, one vote a match.
BUDGET = {"#votes": "1", "#max-tokens": "16", "#max-thinking-tokens": "8"}
XSS_QUERY = '<b>not bold</b><script>window.__xss = "query"</script>'
XSS_RESPONSES = ['<script>window.__xss = "script"</script>alert(1)',
                 '<img src=x onerror="window.__xss = \'img\'">',
                 'plain " & \' < > text']
# Records every CSP violation the page reports, before any of its own code runs.
WATCH_CSP = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


@dataclass
class Inspector:
    page: Any
    server: RealServer
    artifacts: Path
    problems: list[str] = field(default_factory=list)  # console errors, page errors, JS dialogs
    urls: list[str] = field(default_factory=list)
    authorized: list[str] = field(default_factory=list)  # API calls that carried the key

    def open(self) -> None:
        """Load the page and give it the key when it asks (the service has API keys)."""
        self.page.goto(f"{self.server.url}/ui/")
        self.page.wait_for_selector("#key-dialog[open]")
        self.shot("api-key")
        self.page.fill("#key-input", API_KEY)
        self.page.click("#key-form button[type=submit]")
        self.page.wait_for_selector("#health .item.good")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def set_form(self, method: str, responses: list[str] | None = None, query: str | None = None,
                 seed: str = "3") -> None:
        p = self.page
        if query is not None:
            p.fill("#query", query)
        if responses is not None:
            while p.locator("#responses .response-row").count() > 2:
                p.locator("#responses .remove").last.click()
            while p.locator("#responses .response-row").count() < len(responses):
                p.click("#add-response")
            for row, text in zip(p.locator("#responses textarea").all(), responses):
                row.fill(text)
        p.select_option("#method", method)
        for selector, value in {**BUDGET, "#seed": seed}.items():
            p.fill(selector, value)

    def judge(self, path: str) -> dict:
        with self.page.expect_response(f"**{path}", timeout=120_000) as answer:
            self.page.click("#submit")
        assert answer.value.status == 200, answer.value.text()
        self.page.wait_for_selector("#view-result .result")
        return answer.value.json()

    def api(self, path: str) -> dict:
        r = httpx.get(f"{self.server.url}{path}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def inspector(browser, ui_server, artifacts) -> Iterator[Inspector]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.add_init_script(WATCH_CSP)
    ins = Inspector(page, ui_server, artifacts)

    def console(msg: Any) -> None:
        # The page's first status call, before it has a key, is refused: that 401 is expected.
        if msg.type == "error" and "401" not in msg.text:
            ins.problems.append(f"console: {msg.text}")

    def dialog(d: Any) -> None:
        ins.problems.append(f"dialog: {d.type} {d.message}")
        d.dismiss()

    def request(r: Any) -> None:
        ins.urls.append(r.url)
        if "/v1/" in r.url and r.headers.get("authorization") == f"Bearer {API_KEY}":
            ins.authorized.append(r.url)

    page.on("console", console)
    page.on("pageerror", lambda e: ins.problems.append(f"page error: {e}"))
    page.on("dialog", dialog)
    page.on("request", request)
    ins.open()
    try:
        yield ins
        assert page.evaluate("window.__csp") == []
        assert ins.problems == []
        assert ins.authorized and not [u for u in ins.urls if API_KEY in u]  # the key never goes in a URL
    finally:
        context.close()


def test_knockout_bracket_rounds_and_byes(inspector):
    ins = inspector
    ins.shot("try-it")
    ins.set_form("knockout")  # the sample query with its 5 responses
    body = ins.judge("/v1/judge/rank")
    page = ins.page
    # 5 responses: a bracket of 8 with 3 byes, so 1 match and 3 byes, then 2 matches, then the final.
    assert page.locator(".bracket .round[data-round]").count() == 3 == body["scores"][0]["rounds"]
    first = page.locator('.bracket .round[data-round="1"]')
    assert first.locator(".match-box").count() == 1 and first.locator(".bye").count() == 3
    assert page.locator('.bracket .round[data-round="2"] .match-box').count() == 2
    assert page.locator('.bracket .round[data-round="3"] .match-box').count() == 1
    byes = first.locator(".bye").evaluate_all("els => els.map(e => Number(e.dataset.player))")
    assert sorted(byes) == sorted(s["index"] for s in body["scores"] if s["byes"] == 1)
    assert page.locator(".bracket .champion .idx").inner_text() == f"#{body['best']}"
    final = [m for m in body["matches"] if m["round"] == 3][0]
    final_box = page.locator('.bracket .round[data-round="3"] .match-box .idx').all_inner_texts()
    assert final_box == [f"#{i}" for i in final["pair"]]
    tiebreaks = sum(m["decided_by"] == "tiebreak" for m in body["matches"])
    assert page.locator(".bracket .badge", has_text="tiebreak").count() == tiebreaks
    # Every match's votes as cards, with the marks the API reported.
    assert page.locator(".match").count() == 4 == len(body["matches"])
    votes = [v for m in body["matches"] for v in m["votes"]]
    assert page.locator(".vote").count() == len(votes)
    assert page.locator(".vote .badge", has_text="forced").count() == sum(v["forced"] for v in votes)
    ins.shot("knockout-bracket")


def test_a_votes_reasoning_opens(inspector):
    ins = inspector
    ins.set_form("knockout")
    body = ins.judge("/v1/judge/rank")  # the same request again: every vote from the cache
    page = ins.page
    sources = [v["source"] for m in body["matches"] for v in m["votes"]]
    assert page.locator(".vote .badge.source-cache").count() == sources.count("cache")
    details = page.locator(".match").first.locator("details.reasoning").first
    assert details.get_attribute("open") is None and not details.locator("pre").is_visible()  # collapsed
    details.locator("summary").click()
    assert details.get_attribute("open") is not None and details.locator("pre").is_visible()
    assert details.locator("pre").text_content() == body["matches"][0]["votes"][0]["reasoning"]
    details.scroll_into_view_if_needed()
    ins.shot("vote-reasoning")


def test_open_a_recorded_judgment_from_the_list(inspector):
    ins = inspector
    page = ins.page
    ins.set_form("pairwise", responses=["Paris.", "Lyon is the capital of France."],
                 query="What is the capital of France?")
    judged = ins.judge("/v1/judge/pairwise")
    page.click("nav [data-view=recent]")
    page.wait_for_selector(f'#recent-body tr[data-id="{judged["id"]}"]')
    listing = ins.api("/v1/judgments?limit=50")
    rows = page.locator("#recent-body tr").evaluate_all("els => els.map(e => e.dataset.id)")
    assert rows == [s["id"] for s in listing["data"]] and rows[0] == judged["id"]  # newest first
    ins.shot("recent-judgments")
    page.locator(f'#recent-body tr[data-id="{judged["id"]}"] button.open').click()
    page.wait_for_selector("#view-result .result")
    assert page.locator("#view-result code.result-id").inner_text() == judged["id"]
    assert page.locator("#view-result pre.query").text_content() == "What is the capital of France?"
    assert page.locator(".vote").count() == len(judged["votes"])
    ins.shot("recorded-judgment")


def no_markup_ran(ins: Inspector) -> None:
    page = ins.page
    assert page.locator("pre.query").text_content() == XSS_QUERY
    assert page.locator("pre.response").all_text_contents() == XSS_RESPONSES
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.scripts.length") == 1  # app.js alone
    assert page.locator("#view-result img, #view-result b, #view-result script").count() == 0


def test_untrusted_text_renders_as_text(inspector):
    ins = inspector
    page = ins.page
    ins.set_form("elo", responses=XSS_RESPONSES, query=XSS_QUERY)
    judged = ins.judge("/v1/judge/rank")
    no_markup_ran(ins)
    assert page.locator(".heatmap tbody tr").count() == 3 and page.locator(".ratings tbody tr").count() == 3
    shown = page.locator(".ratings tbody tr td:nth-child(2)").all_inner_texts()
    assert [t.split()[0] for t in shown] == [f"#{i}" for i in judged["ranking"]]
    ins.shot("elo-ratings-and-untrusted-text")
    # The recorded copy, read back from /v1/judgments, is text too.
    page.click("nav [data-view=recent]")
    page.locator(f'#recent-body tr[data-id="{judged["id"]}"] button.open').click()
    page.wait_for_selector("#view-result .result")
    no_markup_ran(ins)
