"""Core statements run raw on psycopg, compiled once per shape.

The read paths that bypass the ORM build an ordinary SQLAlchemy statement per request and
run it here: SQLAlchemy's cache key of the statement (which leaves out the values of its
parameters) finds SQL compiled once with positional parameters (``$1``...), and this
request's values are taken from the key. Building the clauses and one lookup is all a
request pays; psycopg sends the SQL as it is and prepares it after a few uses.
"""

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ClauseElement


def slot(name: str, type_: Any = None) -> Any:
    """A parameter each execution fills in (the rest of the SQL is compiled once)."""
    return bindparam(name, value=None, type_=type_, required=False)


_DIALECT = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class _Compiled:
    compiled: Any  # SQLCompiler
    sql: bytes
    order: tuple[str, ...]
    processors: dict[str, Any]


_CACHE: OrderedDict[Any, _Compiled | None] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 1024


def prepare(statement: ClauseElement, given: dict[str, Any]) -> tuple[bytes, list[Any]] | None:
    """``statement``'s SQL (positional, ``$1``...) and this execution's parameter values:
    its own, with the slots filled from ``given``. None when it cannot be run raw (its
    SQL would depend on the values: an expanding IN, or an element with no cache key)."""
    key = statement._generate_cache_key()
    if key is None:
        return None
    with _CACHE_LOCK:
        known = key.key in _CACHE
        found = _CACHE.get(key.key)
        if known:
            _CACHE.move_to_end(key.key)
    if not known:
        compiled: Any = statement.compile(dialect=_DIALECT, cache_key=key)
        found = None
        sql = str(compiled).encode()
        order = tuple(compiled.positiontup or ())
        if (
            not compiled.post_compile_params
            and not compiled.literal_execute_params
            and _numbered(sql) == len(order)
        ):
            found = _Compiled(compiled, sql, order, dict(compiled._bind_processors))
        with _CACHE_LOCK:
            _CACHE[key.key] = found
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    if found is None:
        return None
    params = found.compiled.construct_params(
        extracted_parameters=key.bindparams, escape_names=False
    )
    params.update(given)
    processors = found.processors
    values = [
        processors[name](params[name]) if name in processors else params[name]
        for name in found.order
    ]
    return found.sql, values


_DOLLAR = re.compile(rb"\$(\d+)")


def _numbered(sql: bytes) -> int:
    """How many parameters ``sql`` numbers (``$1``... each once or more, none skipped), or
    -1: then something else in it looks like one, and ``renumber`` could not be trusted."""
    numbers = {int(n) for n in _DOLLAR.findall(sql)}
    return len(numbers) if numbers == set(range(1, len(numbers) + 1)) else -1


def _shifted(offset: int) -> Callable[[re.Match[bytes]], bytes]:
    return lambda m: b"$%d" % (int(m.group(1)) + offset)


def renumber(texts: list[bytes], counts: list[int]) -> list[bytes]:
    """Texts of statements with positional parameters, each numbered from ``$1``, renumbered
    to follow one another in one statement (the second's ``$1`` after the first's
    ``counts[0]`` parameters, and so on)."""
    renumbered = []
    offset = 0
    for text, count in zip(texts, counts, strict=True):
        if offset:
            text = _DOLLAR.sub(_shifted(offset), text)
        renumbered.append(text)
        offset += count
    return renumbered


@dataclass(frozen=True, slots=True)
class Fixed:
    """A statement compiled once (its only parameters are slots, or fixed constants)."""

    sql: bytes
    order: tuple[str, ...]
    constants: dict[str, Any]

    def values(self, given: dict[str, Any]) -> list[Any]:
        constants = self.constants
        return [given[name] if name in given else constants[name] for name in self.order]


def compile_once(statement: ClauseElement) -> Fixed:
    compiled: Any = statement.compile(dialect=_DIALECT)
    sql = str(compiled).encode()
    order = tuple(compiled.positiontup or ())
    if _numbered(sql) != len(order):
        raise ValueError("the statement's text has something that looks like a parameter")
    return Fixed(sql, order, {k: v for k, v in compiled.params.items() if v is not None})
