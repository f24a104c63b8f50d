"""Reading redis-server's own log: is it loading a dataset, why did it refuse to stop."""

from redkeep.actions.stack import _refusal
from redkeep.stack.redis_server import loading_by_log

START = "1:M 01 Dec 2026 05:00:00.000 * Server initialized\n"


def test_a_server_between_loading_start_and_end_is_loading(tmp_path):
    log = tmp_path / "redis.log"
    cases = {
        START + "1:M 01 Dec * Loading RDB produced by version 7.0.15\n": True,
        START + "1:M * Reading RDB base file on AOF loading...\n": True,
        "1:S * MASTER <-> REPLICA sync: Loading DB in memory\n": True,
        START + "1:M * Loading RDB produced by version 7.0.15\n1:M * DB loaded from disk\n": False,
        "1:S * MASTER <-> REPLICA sync: Loading DB in memory\n"
        "1:S * MASTER <-> REPLICA sync: Finished with success\n": False,
        START + "1:M * Ready to accept connections tls\n": False,
    }
    for text, loading in cases.items():
        log.write_text(text)
        assert loading_by_log(log) is loading, text
    assert loading_by_log(tmp_path / "missing.log") is False


def test_the_reason_a_server_refused_to_stop_is_its_own_not_a_client_s(tmp_path):
    log = tmp_path / "redis.log"
    log.write_text(
        "1:S # Error accepting a client connection: error:0A000126:SSL routines::unexpected eof\n"
        "1:S # User requested shutdown...\n"
        "1:S # Writing initial AOF, can't exit.\n"
        "1:S # Errors trying to shut down the server. Check the logs for more information.\n"
    )
    assert _refusal(log, 0) == "Writing initial AOF, can't exit."
    log.write_text(
        "1:M # Error accepting a client connection: error:0A000126:SSL routines::unexpected eof\n"
        "1:M # Write error saving DB on disk: No space left on device\n"
        "1:M # Error trying to save the DB, can't exit.\n"
    )
    assert _refusal(log, 0) == "Write error saving DB on disk: No space left on device"
