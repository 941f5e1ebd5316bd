"""`_acceptor` drops its lookahead for a pattern whose characters are all safe (`_only_safe_chars`): the
verdicts must stay those of the lookahead regex, on any value, and patterns it cannot read keep it."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from capstate._policy import _CONTROL, _PATH_UNSAFE, _acceptor, _only_safe_chars

_PATTERNS = [
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",  # hellgate's reference
    "[a-zA-Z0-9-]{8,50}",  # vipps's reference
    "[a-z]+x-_~[0-9]*",
    "[ -~]{1,5}",  # safe for the control rule, not for a path (it holds '/', '?', '#', '%', '\\')
    "[!-~]+",
]
_VALUES = st.text(alphabet=st.sampled_from("aZ09-_~/\\?#% x.\x00\x7f\u2028\uff0f"), max_size=60)


def _with_lookahead(pattern: str, in_path: bool) -> re.Pattern[str]:
    refused = (_PATH_UNSAFE if in_path else _CONTROL).pattern[1:-1]
    return re.compile(rf"(?=[^{refused}]*\Z)(?:{pattern})", re.DOTALL)


@given(st.sampled_from(_PATTERNS), st.booleans(), _VALUES)
def test_the_acceptor_without_its_lookahead_judges_as_with_it(pattern: str, in_path: bool, value: str) -> None:
    accept = _acceptor(pattern, in_path)
    assert accept is not None
    assert (accept.fullmatch(value) is None) is (_with_lookahead(pattern, in_path).fullmatch(value) is None)


def test_only_patterns_read_to_the_end_with_safe_characters_drop_the_lookahead() -> None:
    assert _only_safe_chars(_PATTERNS[0], _PATH_UNSAFE) and _only_safe_chars(_PATTERNS[1], _PATH_UNSAFE)
    assert _only_safe_chars("[ -~]{1,5}", _CONTROL) and not _only_safe_chars("[ -~]{1,5}", _PATH_UNSAFE)
    for unread in ("a.b", "[^a]+", "(a|b)", "\\d+", "ab{3}", "[a-z/]+", "(?i)[a-z]+", "[a-z]{2,}?"):
        assert not _only_safe_chars(unread, _PATH_UNSAFE), unread
    kept, dropped = _acceptor("[a-z/]+", True), _acceptor(_PATTERNS[1], True)
    assert kept is not None and dropped is not None
    assert "(?=" in kept.pattern and "(?=" not in dropped.pattern


class _Spec:
    """What FastSpec reads of a spec, for the reference check alone."""

    name = "probe"
    initial = "new"
    terminal: frozenset[str] = frozenset()


@given(st.sampled_from([*_PATTERNS, None, "(?i)[a-z]+"]), st.booleans(), st.integers(1, 4),
       st.one_of(st.none(), st.integers(4, 30)), st.one_of(_VALUES, st.sampled_from([".", "..", "\uff0e\uff0e"])))
def test_the_audits_inline_reference_check_judges_as_the_rule(pattern: str | None, in_path: bool, low: int,
                                                              high: int | None, value: str) -> None:
    """`FastSpec.reference_accepted` (the regex case of `acceptor()` inline, compiled and plain) must say
    what `problem` says, including for path segments whose look-alikes only the long way refuses."""
    from capstate._hotpath import hot, plain
    from capstate._policy import IdentifierRule, Policy

    rule = IdentifierRule(low, high, pattern, in_path)
    policy = Policy(reference=rule)
    for module in (hot, plain()):
        fast = module.FastSpec(_Spec(), {}, policy, None, rule.acceptor(), rule.fullmatch_parts(), in_path)
        assert fast.reference_accepted(value) is (rule.problem(value) is None), module
