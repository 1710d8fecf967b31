"""Rules the connection enforces before any I/O happens."""

from __future__ import annotations

import pytest

from partita.transport import MIN_SERVER_VERSION, ServerVersionError
from partita.transport.connection import check_server_version, rfc3339


def test_servers_older_than_message_schedules_are_refused_with_the_reason() -> None:
    with pytest.raises(ServerVersionError, match=r"nats-server 2\.11\.9 is too old: Partita needs >= 2\.12\.0"):
        check_server_version((2, 11, 9))
    check_server_version(MIN_SERVER_VERSION)
    check_server_version((2, 15, 1))


def test_schedule_times_round_up_to_the_next_whole_second() -> None:
    assert rfc3339(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339(1_700_000_000_001) == "2023-11-14T22:13:21Z"  # never early
