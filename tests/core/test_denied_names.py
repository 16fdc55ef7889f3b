"""Which refused DNS names become `network.denied` events, at the edges of its two
limits: a name asked again is reported once per repeat window (to the instant), a
window holds a bounded number of distinct names and opens at the first refusal after
the last one closed, the next event says how many went unreported (once), a name left
out of a full window is not taken for a repeat, and what is remembered stays bounded.

A sandbox may ask for endless random subdomains; these bounds are what keep that from
flooding the store and the event stream (test_small_parts.py has the basic cases).
"""

from __future__ import annotations

import pytest

from sandlot.core.denied_names import PER_WINDOW, REPEAT_SECONDS, WINDOW_SECONDS, DeniedNames


def fill_window(names: DeniedNames, at: float, prefix: str = "fill") -> None:
    """Use up one window's events with distinct names, all at `at`."""
    for i in range(PER_WINDOW):
        assert names.report(f"{prefix}{i}.test", at) is not None


@pytest.mark.parametrize(
    ("later", "reported"),
    [
        (0.0, False),
        (REPEAT_SECONDS - 0.001, False),
        (REPEAT_SECONDS, True),  # the repeat window is over at its end, not after it
        (REPEAT_SECONDS * 3, True),
    ],
)
def test_a_repeated_name_is_reported_again_once_its_repeat_window_ends(
    later: float, reported: bool
) -> None:
    names = DeniedNames()
    assert names.report("tracker.test", 100.0) == {"name": "tracker.test"}
    again = names.report("tracker.test", 100.0 + later)
    assert (again == {"name": "tracker.test"}) is reported
    assert reported or again is None


def test_repeats_of_one_name_do_not_use_up_the_window() -> None:
    names = DeniedNames()
    assert names.report("same.test", 0.0) is not None
    for i in range(1000):
        assert names.report("same.test", i * 0.001) is None
    reported = [names.report(f"other{i}.test", 1.0) for i in range(PER_WINDOW)]
    assert sum(r is not None for r in reported) == PER_WINDOW - 1
    assert reported[-1] is None


@pytest.mark.parametrize(
    ("later", "opens"),
    [(WINDOW_SECONDS - 0.001, False), (WINDOW_SECONDS, True), (WINDOW_SECONDS + 30, True)],
)
def test_a_full_window_takes_no_new_names_until_it_ends(later: float, opens: bool) -> None:
    names = DeniedNames()
    fill_window(names, 50.0)
    assert names.report("over.test", 50.0) is None
    event = names.report("next.test", 50.0 + later)
    if opens:
        assert event == {"name": "next.test", "unreported": 1}
    else:
        assert event is None


def test_a_window_opens_at_the_first_refusal_after_the_last_one_ended() -> None:
    names = DeniedNames()
    assert names.report("a.test", 0.0) is not None
    fill_window(names, 15.0)  # the first window ended at 10: this one runs from 15
    assert names.report("b.test", 24.9) is None  # 9.9 s in: still the full window
    assert names.report("c.test", 25.0) == {"name": "c.test", "unreported": 1}


def test_the_unreported_count_is_given_once_then_starts_again() -> None:
    names = DeniedNames()
    fill_window(names, 0.0)
    for i in range(5):
        assert names.report(f"lost{i}.test", 1.0) is None
    assert names.report("first.test", WINDOW_SECONDS) == {"name": "first.test", "unreported": 5}
    assert names.report("second.test", WINDOW_SECONDS) == {"name": "second.test"}


def test_a_name_left_out_of_a_full_window_is_not_taken_for_a_repeat() -> None:
    names = DeniedNames()
    fill_window(names, 0.0)
    assert names.report("left-out.test", 1.0) is None
    event = names.report("left-out.test", WINDOW_SECONDS)  # 9 s later: a repeat it is not
    assert event == {"name": "left-out.test", "unreported": 1}


def test_a_name_reported_in_one_window_is_still_a_repeat_early_in_the_next() -> None:
    names = DeniedNames()
    assert names.report("edge.test", 9.0) is not None  # its repeat window runs to 19
    assert names.report("opener.test", 12.0) is not None  # a new window from 12
    assert names.report("edge.test", 18.0) is None
    assert names.report("edge.test", 19.0) == {"name": "edge.test"}


@pytest.mark.parametrize("names_per_window", [1, PER_WINDOW, PER_WINDOW * 50])
def test_what_is_remembered_stays_bounded_however_many_names_are_asked(
    names_per_window: int,
) -> None:
    names = DeniedNames()
    events = 0
    for window in range(200):
        start = window * WINDOW_SECONDS
        for i in range(names_per_window):
            events += names.report(f"r{window}-{i}.example", start + i * 1e-6) is not None
        assert len(names._until) <= 2 * PER_WINDOW
    assert events == 200 * min(names_per_window, PER_WINDOW)
