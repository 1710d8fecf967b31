"""Rules the connection enforces before any I/O happens."""

from __future__ import annotations

import nats.js.errors
import pytest

from partita.transport import MIN_SERVER_VERSION, NoStreamListening, ServerVersionError, TransportError
from partita.transport.connection import check_server_version, rfc3339, translate_errors


def test_servers_older_than_message_schedules_are_refused_with_the_reason() -> None:
    with pytest.raises(ServerVersionError, match=r"nats-server 2\.11\.9 is too old: Partita needs >= 2\.12\.0"):
        check_server_version((2, 11, 9))
    check_server_version(MIN_SERVER_VERSION)
    check_server_version((2, 15, 1))


def test_schedule_times_round_up_to_the_next_whole_second() -> None:
    assert rfc3339(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339(1_700_000_000_001) == "2023-11-14T22:13:21Z"  # never early


def test_a_bare_jetstream_status_is_named_not_printed_as_none() -> None:
    unavailable = r"^read x: JetStream unavailable \(status 503\), try again$"
    with pytest.raises(TransportError, match=unavailable), translate_errors("read x"):
        raise nats.js.errors.ServiceUnavailableError(code=503)
    with pytest.raises(TransportError, match=r"^read x: stream not found \(code 10059\)$"), translate_errors("read x"):
        raise nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found")


def test_a_publish_nobody_stores_is_its_own_error() -> None:
    with pytest.raises(NoStreamListening, match="no stream is listening"), translate_errors("publish a.b"):
        raise nats.js.errors.NoStreamResponseError
