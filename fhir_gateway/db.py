"""Database plumbing: the declarative Base, engines and session factories.

SQLite is the embedded default and PostgreSQL (psycopg 3) is production; both run the same
code. Nothing connects at import time: ``create_engine_for`` is called by the app factory,
the CLI and Alembic's env.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


UnitOfWork = Callable[[], AbstractContextManager[Session]]
"""Opens one transaction (a Session) and commits it when the block ends normally."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine_for(
    url: str, *, pool_size: int = 10, pool_pre_ping: bool = False, echo: bool = False
) -> Engine:
    """An engine for ``url`` with the settings each backend needs.

    ``pool_pre_ping`` costs a round trip on every checkout; without it a connection broken
    by a database restart fails one request, after which SQLAlchemy invalidates the pool.
    Connections are recycled after 30 minutes either way.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        connect_args={"options": session_options(parsed)},
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pool_pre_ping,
        pool_recycle=1800,
    )


# What every PostgreSQL session of the service runs with. JIT compilation is off: it starts
# when a statement's estimated cost passes a threshold, and the consent predicate's nested
# tests make the estimates of ordinary requests large (a reverse-chained search as a GP:
# estimated 1.5 million, run in 48 ms, then 3.6 s compiling 402 functions); a request's
# statements never run long enough to repay it.
SESSION_OPTIONS = "-cjit=off"


def session_options(url: URL) -> str:
    """The libpq ``options`` for a session: those ``url`` may carry, and ``SESSION_OPTIONS``."""
    given = url.query.get("options")
    existing = given if isinstance(given, str) else " ".join(given or ())
    return f"{existing} {SESSION_OPTIONS}".strip()


def _configure_sqlite(engine: Engine) -> None:
    # SQLAlchemy's SQLite notes ("Serializable isolation / Savepoints / Transactional DDL"):
    # let SQLAlchemy emit BEGIN itself so SAVEPOINT and rollback work, and turn on foreign keys
    # and WAL so readers are not blocked by a writer.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A unit of work may write: take the write lock at BEGIN (IMMEDIATE), so that two
        # writers queue on the busy timeout instead of one failing with "database is locked"
        # when it upgrades a read transaction after the other has written. Read-only
        # connections (the read path) begin DEFERRED and never wait for a writer (WAL).
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_postgresql(engine_or_session: Engine | Session) -> bool:
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    return bind.dialect.name == "postgresql"


def session_factory_for(engine: Engine) -> sessionmaker[Session]:
    """Sessions for units of work (which may write): on SQLite they BEGIN IMMEDIATE."""
    bind = (
        engine.execution_options(sqlite_immediate=True)
        if engine.dialect.name == "sqlite"
        else engine
    )
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends normally, rolled back otherwise."""
    with factory.begin() as session:
        yield session
