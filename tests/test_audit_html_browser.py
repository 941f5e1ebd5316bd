"""The HTML audit report in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium): the truncation notice at the top, the filters by code, severity and payment, thousands
separators, a hostile log shown as text, and not one network request.

Skips with one line when chromium, chromedriver or selenium is absent; fails instead when CI=true.
"""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_audit_parallel import generated_log
from test_cli import run_cli

SHOP = Path(__file__).resolve().parents[1] / "examples" / "logs" / "shop-2026-01.jsonl"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
LIMIT = 60


def _missing() -> str | None:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(program) or shutil.which(os.path.basename(program))):
            return f"{os.path.basename(program)} is not installed (apt install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[dev]")'
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"CI must test the HTML report in a real browser: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium"))
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER if os.path.exists(CHROMEDRIVER)
                                                                else str(shutil.which("chromedriver"))))
    try:
        yield driver
    finally:
        driver.quit()


def _requests(driver: Any) -> list[str]:
    """Every URL the page asked the network stack for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = orjson.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A report of more findings than it shows, over a log with a hostile payment id, and the --json of
    the same audit (the truth the page is checked against)."""
    root = tmp_path_factory.mktemp("html")
    big = root / "generated.jsonl.gz"
    big.write_bytes(gzip.compress(generated_log(1500, seed=4)))
    hostile = root / "hostile.jsonl"
    hostile.write_bytes(b'{"payment":"<script>alert(1)</script>","type":"captured","at":"2026-01-05T10:00:00Z",'
                        b'"amount":1,"provider":"vipps"}\n')
    report = root / "report.html"
    run = run_cli(root, "audit", hostile, big, SHOP, "--report", report, "--limit", str(LIMIT), "--json")
    assert run.code == 1, run
    return report, orjson.loads(run.out)


def test_the_network_check_sees_a_request_when_a_page_makes_one(browser: Any, tmp_path: Path) -> None:
    # The control for the no-network assertion below: a page that does fetch is caught.
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = tmp_path / "fetches.html"
        page.write_text(f'<!DOCTYPE html><img src="http://127.0.0.1:{server.server_address[1]}/pixel.png">')
        _requests(browser)
        browser.get(page.as_uri())
        seen = _requests(browser)
    finally:
        server.shutdown()
    assert any(url.startswith("http://127.0.0.1") for url in seen), seen
    assert hits == ["/pixel.png"]


def test_the_report_loads_with_no_network_and_says_what_it_shows(browser: Any, audited: tuple[Path, dict[str, Any]],
                                                                  ) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    path, truth = audited
    _requests(browser)
    browser.get(path.as_uri())
    assert _requests(browser) == [path.as_uri()]  # the file itself, and nothing else
    total = truth["total"]
    assert total > LIMIT
    notice = browser.find_element(By.ID, "shown")
    assert notice.is_displayed() and notice.text == (f"showing {LIMIT} of {total:,} findings; the rest are in "
                                                     f"capstate audit --json")
    # At the top: right under the title, above the fold.
    assert notice.location["y"] < 150
    assert browser.title == f"capstate audit: showing {LIMIT} of {total:,} findings"
    events = browser.find_element(By.CSS_SELECTOR, "#total-events b").text
    assert truth["events"] >= 1000 and events == f"{truth['events']:,}"
    # The hostile payment id is text on the page, and nothing ran.
    assert "<script>alert(1)</script>" in browser.find_element(By.ID, "payments").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    shown = truth["violations"][:LIMIT]
    payments = list(dict.fromkeys(f["payment"] for f in shown))
    sections = browser.find_elements(By.CSS_SELECTOR, "section.payment")
    assert len(sections) == len(payments)
    assert browser.find_element(By.ID, "f-count").text == f"{len(payments)} of {len(payments)} payments shown"
    codes = browser.find_elements(By.CSS_SELECTOR, "dl.codes dt")
    assert {c.text.split()[0] for c in codes} == set(truth["counts"])


def _visible(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [e for e in browser.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def test_the_filters_show_what_they_say(browser: Any, audited: tuple[Path, dict[str, Any]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path, truth = audited
    browser.get(path.as_uri())
    shown = truth["violations"][:LIMIT]
    # By code: a code some shown payments have and others do not.
    by_code: dict[str, set[str | None]] = {}
    for f in shown:
        by_code.setdefault(f["code"], set()).add(f["payment"])
    code = max((c for c in by_code if len(by_code[c]) < len({f["payment"] for f in shown})),
               key=lambda c: len(by_code[c]))
    Select(browser.find_element(By.ID, "f-code")).select_by_value(code)
    sections = _visible(browser, "section.payment")
    assert {s.get_attribute("data-payment") or None for s in sections} == by_code[code]
    rows = _visible(browser, "tr.finding")
    assert rows and {r.get_attribute("data-code") for r in rows} == {code}
    assert len(rows) == sum(1 for f in shown if f["code"] == code)
    assert browser.find_element(By.ID, "f-count").text.startswith(f"{len(by_code[code])} of ")
    # By severity, with the code filter cleared.
    Select(browser.find_element(By.ID, "f-code")).select_by_value("")
    Select(browser.find_element(By.ID, "f-severity")).select_by_value("warning")
    rows = _visible(browser, "tr.finding")
    assert len(rows) == sum(1 for f in shown if f["severity"] == "warning") > 0
    assert all("warning" in r.text for r in rows)
    Select(browser.find_element(By.ID, "f-severity")).select_by_value("")
    # By payment: typing part of one reference leaves that payment, its events and its findings.
    refs = {f["payment"] for f in shown if f["payment"]}
    target = next(f["payment"] for f in shown if f["payment"] and f["code"] == "EXCEEDS_CAPTURABLE"
                  and sum(f["payment"].lower() in r.lower() for r in refs) == 1)
    box = browser.find_element(By.ID, "f-payment")
    box.send_keys(target)
    sections = _visible(browser, "section.payment")
    assert [s.get_attribute("data-payment") for s in sections] == [target]
    timeline = sections[0].find_elements(By.CSS_SELECTOR, "tr.event")
    assert timeline and "authorized" in timeline[0].text  # the payment's history, from its authorization
    assert len(_visible(browser, "tr.finding")) == sum(1 for f in shown if f["payment"] == target)
    box.clear()
    box.send_keys("no such payment")
    assert _visible(browser, "section.payment") == []
    assert browser.find_element(By.ID, "f-count").text.startswith("0 of ")
