"""pytest fixtures of the real-Postfix harness; tests/conftest.py star-imports them.

Description:
    Factories create started objects and stop every one of them at teardown, whether the test
    passed or not (an ExitStack runs all callbacks even when one fails). The plain fixtures
    are the factories' default product.

    postfix_factory(**kwargs) -> PostfixInstance    started; kwargs as PostfixInstance()
    postfix                                         a default instance (hosted.test: alice, bob)
    smtp_sink_factory(start=True, **kwargs)         SmtpSink; start=False for a route that is down
    smtp_sink                                       a started SmtpSink
    tls_sink_factory(cert=None, **kwargs)           TlsSink; default cert from test_ca
    tls_sink                                        a started TlsSink (CA-signed, tls-sink.test)
    test_ca                                         session TestCA in a 0755 directory
    service_user                                    session ServiceUser (created if missing)
    traversable_tmp                                 per-test 0755 directory under /tmp
    pg_cluster                                      session PostgresCluster (started once)
    pg_url                                          a fresh database on it (postwarden's URL)

    Directories are 0755 under /tmp, not pytest's tmp_path (0700): Postfix daemons, smtp-sink
    and the service user must traverse them.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from .postfix import PostfixInstance
from .postgres import PostgresCluster
from .service_user import ServiceUser, ensure_service_user
from .sinks import SmtpSink, TlsSink
from .tlsca import CertFiles, TestCA

__all__ = [
    "pg_cluster",
    "pg_url",
    "postfix",
    "postfix_factory",
    "service_user",
    "smtp_sink",
    "smtp_sink_factory",
    "test_ca",
    "tls_sink",
    "tls_sink_factory",
    "traversable_tmp",
]


def make_traversable_dir(prefix: str) -> Path:
    """A new directory under /tmp with mode 0755."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def traversable_tmp() -> Iterator[Path]:
    path = make_traversable_dir("pw-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    path = make_traversable_dir("pw-ca-")
    try:
        yield TestCA(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def service_user() -> ServiceUser:
    return ensure_service_user()


@pytest.fixture
def postfix_factory() -> Iterator[Callable[..., PostfixInstance]]:
    with ExitStack() as stack:

        def make(**kwargs: Any) -> PostfixInstance:
            instance = PostfixInstance(**kwargs)
            stack.callback(instance.close)
            instance.start()
            return instance

        yield make


@pytest.fixture
def postfix(postfix_factory: Callable[..., PostfixInstance]) -> PostfixInstance:
    return postfix_factory()


@pytest.fixture
def smtp_sink_factory(traversable_tmp: Path) -> Iterator[Callable[..., SmtpSink]]:
    numbers = itertools.count()
    with ExitStack() as stack:

        def make(*, start: bool = True, **kwargs: Any) -> SmtpSink:
            sink = SmtpSink(traversable_tmp / f"sink{next(numbers)}", **kwargs)
            stack.callback(sink.stop)
            if start:
                sink.start()
            return sink

        yield make


@pytest.fixture
def smtp_sink(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    return smtp_sink_factory()


@pytest.fixture
def tls_sink_factory(test_ca: TestCA) -> Iterator[Callable[..., TlsSink]]:
    with ExitStack() as stack:

        def make(*, cert: CertFiles | None = None, **kwargs: Any) -> TlsSink:
            cert = cert or test_ca.issue("tls-sink", ("tls-sink.test",), ("127.0.0.1",))
            sink = TlsSink(cert, **kwargs)
            stack.callback(sink.stop)
            sink.start()
            return sink

        yield make


@pytest.fixture
def tls_sink(tls_sink_factory: Callable[..., TlsSink]) -> TlsSink:
    return tls_sink_factory()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        cluster.create_roles()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database for one test; the cluster is running again when it ends."""
    name = pg_cluster.new_database()
    try:
        yield pg_cluster.url(name)
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
        pg_cluster.drop_database(name)
