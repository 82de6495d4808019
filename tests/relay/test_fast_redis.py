"""relay.fast_redis against a real Redis: replies, errors, pipelining order,
scripts (EVALSHA with the EVAL fallback), db selection and reconnecting."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from relay.fast_redis import RespClient, RespError, parse_url

REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [pytest.mark.service, pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")]


def url_with_db(url: str, db: int) -> str:
    parts = urlparse(url)
    if parts.scheme == "unix":
        return parts._replace(query=f"db={db}").geturl()
    return parts._replace(path=f"/{db}", query="").geturl()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"{os.environ['ONEPROXY_REDIS_PREFIX']}resp-{uuid.uuid4().hex[:12]}:"
    yield prefix
    sync = redis.Redis.from_url(REDIS_URL)
    keys = list(sync.scan_iter(match=f"{prefix}*"))
    if keys:
        sync.delete(*keys)
    sync.close()


@pytest.fixture
async def client() -> AsyncIterator[RespClient]:
    client = RespClient.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_simple_replies(client, prefix):
    key = f"{prefix}k"
    assert await client.execute("SET", key, "héllo") == b"OK"
    assert await client.execute("GET", key) == "héllo".encode()
    assert await client.execute("GET", f"{prefix}missing") is None
    assert await client.execute("INCRBY", f"{prefix}n", 5) == 5
    assert await client.execute("INCRBY", f"{prefix}n", -7) == -2
    assert await client.execute("RPUSH", f"{prefix}list", b"a", 2, 1.5) == 3
    assert await client.execute("LRANGE", f"{prefix}list", 0, -1) == [b"a", b"2", b"1.5"]
    assert await client.execute("MGET", key, f"{prefix}missing") == ["héllo".encode(), None]


async def test_error_reply_raises_and_connection_stays_usable(client, prefix):
    key = f"{prefix}k"
    await client.execute("SET", key, "not a number")
    with pytest.raises(RespError, match="not an integer"):
        await client.execute("INCRBY", key, 1)
    with pytest.raises(RespError, match="unknown command"):
        await client.execute("NO-SUCH-COMMAND")
    assert await client.execute("GET", key) == b"not a number"


async def test_bad_argument_type_is_refused_before_sending(client):
    with pytest.raises(TypeError):
        await client.execute("SET", "x", None)
    assert await client.execute("PING") == b"PONG"


async def test_pipelined_replies_match_their_callers(client, prefix):
    counter = f"{prefix}counter"
    counts = await asyncio.gather(*(client.execute("INCR", counter) for _ in range(1000)))
    assert counts == list(range(1, 1001))
    echoes = await asyncio.gather(*(client.execute("ECHO", f"v{i}") for i in range(1000)))
    assert echoes == [f"v{i}".encode() for i in range(1000)]


async def test_a_cancelled_caller_does_not_shift_the_replies(client, prefix):
    slow = asyncio.ensure_future(client.execute("ECHO", "first"))
    after = asyncio.ensure_future(client.execute("ECHO", "second"))
    await asyncio.sleep(0)  # both written
    slow.cancel()
    assert await after == b"second"
    assert await client.execute("ECHO", "third") == b"third"


async def test_concurrent_first_calls_share_one_connection(prefix):
    client = RespClient.from_url(REDIS_URL)
    try:
        ids = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(50)))
        assert len(set(ids)) == 1
    finally:
        await client.aclose()


async def test_script_falls_back_to_eval_then_runs_by_sha(client, prefix):
    # A unique comment: this script is certainly not in the server's cache.
    script = client.script(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    key = f"{prefix}n"
    assert await client.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script(keys=[key], args=[3]) == 3  # NOSCRIPT, then EVAL
    assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await script(keys=[key], args=[4]) == 7  # EVALSHA


async def test_script_concurrent_first_calls_and_replies(client, prefix):
    script = client.script(f"-- {uuid.uuid4().hex}\nreturn {{KEYS[1], tonumber(ARGV[1]) * 2, false}}")
    results = await asyncio.gather(*(script(keys=[f"{prefix}{i}"], args=[i]) for i in range(200)))
    assert results == [[f"{prefix}{i}".encode(), i * 2, None] for i in range(200)]  # Lua false: nil


async def test_script_error_is_raised_not_retried(client, prefix):
    script = client.script(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], 'x')")
    with pytest.raises(RespError, match="not an integer"):
        await script(keys=[f"{prefix}n"])
    with pytest.raises(RespError, match="not an integer"):
        await script(keys=[f"{prefix}n"])  # cached now: fails by EVALSHA the same way


async def test_url_db_is_selected(prefix):
    client = RespClient.from_url(url_with_db(REDIS_URL, 9))
    sync = redis.Redis.from_url(url_with_db(REDIS_URL, 9))
    key = f"{prefix}on-db-9"
    try:
        assert await client.execute("SET", key, "nine") == b"OK"
        assert sync.get(key) == b"nine"
        assert redis.Redis.from_url(url_with_db(REDIS_URL, 0)).get(key) is None
    finally:
        sync.delete(key)
        sync.close()
        await client.aclose()


async def test_reconnects_after_the_server_drops_the_connection(client, prefix):
    first = await client.execute("CLIENT", "ID")
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        assert sync.client_kill_filter(_id=first) == 1
    finally:
        sync.close()
    for _ in range(3):  # a call racing the close may fail; it is not retried
        try:
            second = await client.execute("CLIENT", "ID")
            break
        except ConnectionError:
            continue
    else:
        pytest.fail("no reconnect")
    assert second != first
    assert await client.execute("SET", f"{prefix}k", 1) == b"OK"


async def test_calls_in_flight_fail_when_the_connection_drops(client, prefix):
    victim = await client.execute("CLIENT", "ID")
    blocked = asyncio.ensure_future(client.execute("BLPOP", f"{prefix}never", 0))
    await asyncio.sleep(0.05)
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        sync.client_kill_filter(_id=victim)
    finally:
        sync.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 5)
    assert await client.execute("PING") == b"PONG"


async def test_closed_client_refuses_calls():
    client = RespClient.from_url(REDIS_URL)
    assert await client.execute("PING") == b"PONG"
    await client.aclose()
    with pytest.raises(ConnectionError):
        await client.execute("PING")


async def test_connect_failure_is_a_connection_error():
    client = RespClient.from_url("redis://127.0.0.1:1/0", connect_timeout=2)
    with pytest.raises(ConnectionError):
        await client.execute("PING")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of this test's own on a Unix socket, with a password
    and an ACL user alice/wonder."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    sock = tmp_path / "redis.sock"
    config = ["--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    users = ["--requirepass", "s3cr:t", "--user", "alice", "on", ">wonder", "~*", "&*", "+@all"]
    proc = subprocess.Popen([server, *config, *users], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


async def test_unix_socket_with_auth(private_redis):
    for url in (
        f"unix://:s3cr%3At@{private_redis}?db=2",
        f"unix://alice:wonder@{private_redis}?db=2",
        f"unix://{private_redis}?db=2&username=alice&password=wonder",
    ):
        client = RespClient.from_url(url)
        try:
            assert await client.execute("INCR", "n") >= 1
            assert (await client.execute("CLIENT", "INFO")).split(b" db=")[1].startswith(b"2 ")
        finally:
            await client.aclose()
    assert redis.Redis(unix_socket_path=str(private_redis), password="s3cr:t", db=2).get("n") == b"3"
    client = RespClient.from_url(f"unix://alice:wrong@{private_redis}")
    with pytest.raises(RespError, match="WRONGPASS"):
        await client.execute("PING")
    client = RespClient.from_url(f"unix://{private_redis}")
    with pytest.raises(RespError, match="NOAUTH"):
        await client.execute("PING")


def test_parse_url_credentials_and_db():
    a = parse_url("redis://us%40er:p%3Ass%2Fw@redis.example:6380/3")
    assert (a.host, a.port, a.db, a.username, a.password, a.path, a.ssl) == (
        "redis.example",
        6380,
        3,
        "us@er",
        "p:ss/w",
        None,
        None,
    )
    a = parse_url("redis://:secret@[::1]")
    assert (a.host, a.port, a.db, a.username, a.password) == ("::1", 6379, 0, None, "secret")
    a = parse_url("redis://localhost/2?db=5")
    assert a.db == 5  # the query wins, as in redis-py
    a = parse_url("redis://")
    assert (a.host, a.port, a.db, a.username, a.password) == ("localhost", 6379, 0, None, None)


def test_parse_url_unix_and_tls():
    a = parse_url("unix:///var/run/redis/redis.sock?db=4&password=pw")
    assert (a.path, a.db, a.password, a.username) == ("/var/run/redis/redis.sock", 4, "pw", None)
    a = parse_url("rediss://cache.example:6390/1")
    assert a.ssl is not None and a.ssl.verify_mode == ssl.CERT_REQUIRED and a.ssl.check_hostname
    a = parse_url("rediss://cache.example/1?ssl_cert_reqs=none")
    assert a.ssl is not None and a.ssl.verify_mode == ssl.CERT_NONE and not a.ssl.check_hostname
    with pytest.raises(ValueError):
        parse_url("http://localhost")
