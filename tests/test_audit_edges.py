"""Audit edges that mutation testing found unpinned: the refund window's closing instant and an overridden
capture maximum on the fast path, and a payment that holds nothing is never dangling."""

from __future__ import annotations

from test_audit import line

from capstate import Code, audit


def test_a_refund_exactly_at_the_end_of_the_refund_window_is_refused_on_both_paths() -> None:
    # Vipps refunds within 365 days of the authorization; "at or past" the end is too late. The refund is a
    # plain, canonical line, the kind the fast path takes, so the fast path must not wave it through.
    lines = [line("order-0000010", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK"),
             line("order-0000010", "captured", "2026-01-02T10:00:00Z", amount=10000, key="c1"),
             line("order-0000010", "refunded", "2027-01-01T10:00:00Z", amount=1000, key="r1"),
             line("order-0000011", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK"),
             line("order-0000011", "captured", "2026-01-02T10:00:00Z", amount=10000, key="c1"),
             line("order-0000011", "refunded", "2027-01-01T09:59:59Z", amount=1000, key="r1")]
    for fast in (True, False):
        report = audit(lines, fast=fast)
        assert [(f.payment, f.line, f.code) for f in report.violations] == [
            ("order-0000010", 3, Code.REFUND_WINDOW_EXPIRED)], fast
        assert report.events == 6


def test_a_payment_that_holds_nothing_is_never_dangling() -> None:
    # An authorization of 0 is a card check, a legal fact (issue 12 item 7), and it holds nothing on the card:
    # long past its validity there is no remainder to report as DANGLING_AUTHORIZATION.
    lines = [line("order-0000012", "authorized", "2026-01-01T10:00:00Z", amount=0, currency="DKK"),
             line("order-0000013", "authorized", "2026-01-01T10:00:00Z", amount=5000, currency="DKK")]
    for fast in (True, False):
        report = audit(lines, as_of="2026-03-01T00:00:00Z", fast=fast)
        assert [(f.payment, f.code) for f in report.violations] == [
            ("order-0000013", Code.DANGLING_AUTHORIZATION)], fast


def test_a_capture_past_an_overridden_maximum_is_reported_on_both_paths() -> None:
    # Vipps takes any number of partial captures; a merchant's contract of at most 2 makes the third one a
    # breach, though it is a plain, clean-looking move the fast path would otherwise take.
    lines = [line("order-0000014", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK"),
             *(line("order-0000014", "captured", f"2026-01-0{d}T10:00:00Z", amount=1000, key=f"c{d}")
               for d in (2, 3, 4))]
    for fast in (True, False):
        report = audit(lines, "vipps", overrides={"max_captures": 2}, fast=fast)
        assert [(f.line, f.code) for f in report.violations] == [(4, Code.MULTIPLE_CAPTURES_UNSUPPORTED)], fast
