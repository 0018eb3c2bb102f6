"""erpsync's state in PostgreSQL: the only package that writes SQL for the service's own tables.

Functions take a connection (or the pool) as their first argument, so callers choose the
transaction boundaries.
"""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
"""A connection, whether acquired from the pool or opened directly."""

Executor: TypeAlias = Connection | asyncpg.Pool
"""Anything that can run a single statement."""
