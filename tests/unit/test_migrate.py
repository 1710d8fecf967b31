"""Where `partita migrate events` carries each message of an events stream an older version made (pure)."""

from __future__ import annotations

from partita.transport import Layout
from partita.transport.migrate import carried_over

LAYOUT = Layout()


def test_timers_move_to_the_timers_stream_and_events_go_back_on_their_subjects() -> None:
    schedule = {"Nats-Schedule": "@at 2030-01-01T00:00:00Z", "Nats-Schedule-Target": "partita.wf.7.timer",
                "Nats-Msg-Id": "timer:x:sealed", "Nats-Rollup": "sub"}  # fmt: skip
    assert carried_over(LAYOUT, "partita.esched.t1=3Aab", schedule, 1) == (
        "partita.timers.t1=3Aab",
        {"Nats-Schedule": "@at 2030-01-01T00:00:00Z", "Nats-Schedule-Target": "partita.fired.7", "Nats-Rollup": "sub"},
    )
    fired = {"Nats-Scheduler": "partita.esched.t1=3Aab", "Nats-Schedule-Next": "purge"}
    moved = carried_over(LAYOUT, "partita.wf.7.timer", fired, 9)
    assert moved is not None
    subject, headers = moved
    assert subject == "partita.timers.migrated-9"  # due now: it arrives as timers do, through the source
    assert headers["Nats-Schedule-Target"] == "partita.fired.7"
    assert headers["Nats-Schedule"].startswith("@at ")
    assert "Nats-Scheduler" not in headers  # the new stream refuses it from a publisher
    result = carried_over(LAYOUT, "partita.wf.7.result.t._", {"Nats-Msg-Id": "result:1:0:COMPLETED:ab"}, 3)
    assert result == ("partita.wf.7.result.t._", {})


def test_what_no_node_would_read_is_not_carried() -> None:
    assert carried_over(LAYOUT, "partita.wf.71.result.t._", {}, 1) is None  # outside the layout
    assert carried_over(LAYOUT, "partita.wf.07.cmd", {}, 2) is None
    forged = {"Nats-Schedule": "@at 2030-01-01T00:00:00Z", "Nats-Schedule-Target": "partita.wf.3.cmd"}
    assert carried_over(LAYOUT, "partita.wf.3.result.t._", forged, 3) is None  # a worker's schedule
    assert carried_over(LAYOUT, "partita.wf.3.cmd", {"Nats-Scheduler": "partita.wf.3.result.t._"}, 4) is None
    outside = {"Nats-Schedule": "@at 2030-01-01T00:00:00Z", "Nats-Schedule-Target": "partita.wf.99.timer"}
    assert carried_over(LAYOUT, "partita.esched.t2", outside, 5) is None


def test_a_timer_fired_by_a_schedule_no_node_made_is_not_carried() -> None:
    """On an older stream a worker could schedule a TimerFired; the node would dead-letter what it fired, and
    the migration must not turn it into a schedule of the timers stream, which nodes trust."""
    forged = {"Nats-Scheduler": "partita.wf.0.result.alpha.d1", "Nats-Schedule-Next": "purge"}
    assert carried_over(LAYOUT, "partita.wf.8.timer", forged, 4) is None
