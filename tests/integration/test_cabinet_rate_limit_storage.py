"""Attempt counters shared by the cabinet's processes through Redis
(cabinet.rate_limit_storage), as gunicorn's workers need them."""

import pytest

from cabinet.app import create_app
from tests.conftest import make_context

REDIS = "redis://127.0.0.1:6379/15"    # a database of its own, emptied by the test


@pytest.fixture
def redis_db():
    import redis

    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_two_workers_share_one_login_limit(db_url, tmp_path, redis_db):
    """Failed logins alternate between two app instances (two gunicorn
    workers): the 11th is refused, as with one process. With the per-process
    memory:// counters each worker would have seen 5 or 6 and let it by."""
    ctx = make_context(db_url, data_dir=tmp_path, cabinet_rate_limit_storage=REDIS)
    try:
        workers = [create_app(ctx, testing=True).test_client() for _ in range(2)]
        statuses = [workers[n % 2].post("/login", data={"login": "x", "password": "y"})
                    .status_code for n in range(11)]
        assert statuses[:10] == [400] * 10
        assert statuses[10] == 429
        assert redis_db.dbsize() > 0            # the counters are in Redis
    finally:
        ctx.dispose()
