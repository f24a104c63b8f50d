"""Two processes updating different keys of one .env at once both keep their change."""

import multiprocessing

from redkeep.envfile import read_env, update_env


def _writer(path, prefix, rounds):
    for i in range(rounds):
        update_env(path, {f"{prefix}_{i}": str(i)})


def test_concurrent_updates_lose_nothing(tmp_path):
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n")
    writers = [
        multiprocessing.Process(target=_writer, args=(path, name, 150)) for name in ("A", "B")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    values = read_env(path)
    assert values["KEEP"] == "1"
    assert [f"A_{i}" in values and f"B_{i}" in values for i in range(150)] == [True] * 150
    assert oct(path.stat().st_mode & 0o777) == "0o600"
