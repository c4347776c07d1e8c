"""The real servers the tests run on: the ones .ci/run starts for a whole run, and the
fixtures' own, which must not outlive a test process that is killed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy
from support import servers

ROOT = Path(__file__).resolve().parent.parent

#: Runs in the shell .ci/run sets up: are both servers there and answering?
ANSWERS = """
import os, redis, sqlalchemy
assert redis.Redis.from_url(os.environ["FLASK_ALIPAY_TEST_REDIS_URL"]).ping()
engine = sqlalchemy.create_engine(os.environ["FLASK_ALIPAY_TEST_POSTGRES_URL"])
with engine.connect() as connection:
    assert connection.execute(sqlalchemy.text("SHOW server_encoding")).scalar() == "UTF8"
engine.dispose()
print("both answered", flush=True)
"""

#: No locale, as in a fresh container: initdb would pick SQL_ASCII if not told UTF8.
NO_LOCALE = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES")


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def gone(url: str) -> bool:
    """Nothing listens at the URL's address any more (waiting a little for it to go)."""
    deadline = time.monotonic() + 15
    while servers.listening(*address(url)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("ending", ["a-step-fails", "terminated"])
def test_ci_starts_both_servers_and_stops_them_however_the_run_ends(ending: str) -> None:
    """.ci/run's own servers: both answer during the run, and none outlives it."""
    last_step = "false" if ending == "a-step-fails" else "sleep 60 & wait"
    script = f"""
set -euo pipefail
. .ci/services
trap stop_services EXIT
trap 'exit 143' TERM
start_services
echo "redis=$FLASK_ALIPAY_TEST_REDIS_URL"
echo "postgres=$FLASK_ALIPAY_TEST_POSTGRES_URL"
echo "folder=$CI_SERVICES_DIR"
{sys.executable} -c '{ANSWERS}'
{last_step}
"""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLASK_ALIPAY_TEST_") and k not in NO_LOCALE
    }
    run = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    lines: list[str] = []
    for line in run.stdout:
        lines.append(line)
        if "both answered" in line:
            break
    if ending == "terminated":
        time.sleep(0.3)  # into the last step
        run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    output = "".join(lines) + out
    assert "both answered" in output, output + err
    assert run.returncode == (1 if ending == "a-step-fails" else 143), output + err
    found = dict(re.findall(r"^(redis|postgres|folder)=(.+)$", output, re.MULTILINE))
    assert found["redis"].startswith("redis://127.0.0.1:")
    assert found["postgres"].startswith("postgresql+psycopg://alipay@127.0.0.1:")
    assert gone(found["redis"]) and gone(found["postgres"])
    assert not Path(found["folder"]).exists()


def test_fixtures_use_the_servers_ci_gives_them(redis_url: str, postgres_url: str) -> None:
    environ = {
        servers.REDIS_URL_VARIABLE: redis_url,
        # A plain URL, as another CI might pass it: the tests' driver is put in.
        servers.POSTGRES_URL_VARIABLE: postgres_url.replace("+psycopg", ""),
    }
    with servers.redis_url(environ) as given:
        assert given == redis_url  # not a server of its own
        assert redis.Redis.from_url(given).ping()
    with servers.postgres_url(environ) as given:
        assert given == postgres_url
        engine = sqlalchemy.create_engine(given)
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("select 1")).scalar() == 1
        engine.dispose()
    assert redis.Redis.from_url(redis_url).ping()  # and it left them running


def test_a_variable_naming_no_server_is_a_clear_error() -> None:
    port = servers.free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    given = servers.redis_url({servers.REDIS_URL_VARIABLE: url})
    with pytest.raises(servers.MissingServer) as failure, given:
        pass
    message = str(failure.value)
    assert servers.REDIS_URL_VARIABLE in message and f"127.0.0.1:{port}" in message
    assert "hunter2" not in message


def test_the_fixtures_postgresql_is_utf8_whatever_the_locale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in NO_LOCALE:
        monkeypatch.delenv(name, raising=False)
    with servers.postgres_server() as url:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            encoding = connection.execute(sqlalchemy.text("SHOW server_encoding")).scalar()
            nick_name = "长" * 64  # 64 characters, 192 bytes: fits VARCHAR(64) in UTF8 only
            connection.execute(sqlalchemy.text("CREATE TEMP TABLE t (v VARCHAR(64))"))
            connection.execute(sqlalchemy.text("INSERT INTO t VALUES (:v)"), {"v": nick_name})
            fits = connection.execute(sqlalchemy.text("SELECT length(v) FROM t")).scalar()
        engine.dispose()
    assert (encoding, fits) == ("UTF8", 64)


#: Starts one of the fixtures' own servers, prints its URL, then waits to be killed.
OWN_SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from support import servers
with getattr(servers, sys.argv[1])() as url:
    print(url, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("server", ["redis_server", "postgres_server"])
def test_a_fixture_server_dies_with_a_killed_test_process(server: str) -> None:
    code = OWN_SERVER.format(tests=str(ROOT / "tests"))
    holder = subprocess.Popen(
        [sys.executable, "-c", code, server], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert servers.listening(*address(url)), url
    finally:
        holder.kill()  # SIGKILL: no teardown runs
        holder.wait(timeout=30)
    assert gone(url), f"{server} outlived the killed process that started it"
    remove_the_folder_left_behind(address(url)[1])


def remove_the_folder_left_behind(port: int) -> None:
    """A killed process cannot remove its server's folder (as documented): do it here."""
    for folder in Path(tempfile.gettempdir()).glob(f"alipay-redis-{port}-*"):
        shutil.rmtree(folder)
    for folder in Path(tempfile.gettempdir()).glob("alipay-postgres-*"):
        options = folder / "data" / "postmaster.opts"
        if options.exists() and f'"-p" "{port}"' in options.read_text():
            shutil.rmtree(folder)
