"""Which images' alerts a survey prepares while it measures, and which of those stand
(:mod:`skysift.pipeline.early_alerts`): never one whose earlier images were not all measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from skysift.catalog.records import ImageRecord, ImageStatus, Route
from skysift.pipeline.early_alerts import EarlyAlerts, posix_seconds

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _row(index: int, hours: float | None, status: ImageStatus = ImageStatus.OK) -> ImageRecord:
    return ImageRecord(image_id=f"img{index}", status=status, route=Route.SMALL,
                       obs_time=None if hours is None else T0 + timedelta(hours=hours))


def _seconds(hours: float | None) -> float | None:
    return None if hours is None else posix_seconds(T0 + timedelta(hours=hours))


def test_an_image_is_released_once_every_image_still_measured_is_observed_after_it():
    early = EarlyAlerts([_seconds(h) for h in (0, 1, 2, 3)])

    assert early.measured(1, _row(1, 1)) == []  # image 0 (observed earlier) is still being measured
    assert [r.image_id for r in early.measured(0, _row(0, 0))] == ["img0", "img1"]  # oldest first
    assert [r.image_id for r in early.measured(3, _row(3, 3))] == []
    assert [r.image_id for r in early.measured(2, _row(2, 2))] == ["img2", "img3"]
    for started in range(4):
        early.prepared(started, [{"alert_id": started}], None)
    assert early.standing() == {f"img{i}": [{"alert_id": i}] for i in range(4)}


def test_an_image_without_a_header_time_holds_back_every_image_and_failures_are_prepared_again():
    early = EarlyAlerts([_seconds(0), None, _seconds(2)])

    assert early.measured(0, _row(0, 0)) == []  # image 1 could have been observed at any time
    assert early.measured(1, _row(1, None, ImageStatus.FAILED)) == [_row(0, 0)]
    assert early.measured(2, _row(2, 2)) == [_row(2, 2)]
    early.prepared(0, None, OSError("disk gone"))
    early.prepared(1, [], None)
    assert early.standing() == {"img2": []}  # image 0 is prepared again in the alert phase


def test_a_header_time_that_misleads_costs_the_preparation_not_the_alert():
    # image 1's header says hour 5, but it is measured at hour 0.5: image 2 (hour 1) was prepared without it
    early = EarlyAlerts([_seconds(0), _seconds(5), _seconds(1)])
    assert early.measured(0, _row(0, 0)) == [_row(0, 0)]
    assert early.measured(2, _row(2, 1)) == [_row(2, 1)]
    assert early.measured(1, _row(1, 0.5)) == [_row(1, 0.5)]
    for started in range(3):
        early.prepared(started, [], None)
    assert set(early.standing()) == {"img0", "img1"}


@given(data=st.data(), n=st.integers(1, 9))
def test_a_standing_preparation_started_after_every_image_observed_earlier_was_measured(data, n):
    """Whatever the headers say, the order images finish in, which preparations fail and which
    images the caller keeps for the alert phase (``preparable``, never started): every
    image whose alerts stand had each image observed earlier than it (or at an unknown time)
    measured before its preparation started; and with true header times and no failures, all stand."""
    hours = st.one_of(st.none(), st.integers(0, 6).map(float))
    measured = data.draw(st.lists(hours, min_size=n, max_size=n))
    truthful = data.draw(st.booleans())
    header = measured if truthful else data.draw(st.lists(hours, min_size=n, max_size=n))
    failed = data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) if not truthful else [False] * n
    order = data.draw(st.permutations(range(n)))
    known = data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) if not truthful else [False] * n

    early = EarlyAlerts([_seconds(h) for h in header])
    seen_at_start: dict[str, set[int]] = {}
    started: list[str] = []
    done: set[int] = set()
    for index in order:
        done.add(index)
        status = ImageStatus.FAILED if failed[index] else ImageStatus.OK
        for row in early.measured(index, _row(index, measured[index], status), preparable=not known[index]):
            seen_at_start[row.image_id] = set(done)
            started.append(row.image_id)
    assert not any(known[int(image_id.removeprefix("img"))] for image_id in started)
    broken = data.draw(st.sets(st.integers(0, max(0, len(started) - 1)))) if not truthful else set()
    for k, image_id in enumerate(started):
        early.prepared(k, None if k in broken else [{"from": image_id}], OSError("lost") if k in broken else None)

    standing = early.standing()
    for image_id, outcome in standing.items():
        k = int(image_id.removeprefix("img"))
        assert outcome == [{"from": image_id}] and not failed[k] and not known[k] and measured[k] is not None
        earlier = {j for j in range(n) if j != k and (measured[j] is None or measured[j] <= measured[k])}
        assert earlier <= seen_at_start[image_id]
    if truthful:
        assert set(standing) == {f"img{k}" for k in range(n) if measured[k] is not None}
