"""Database session helpers: one engine and one sessionmaker per process, built from settings."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    """Metadata for the tables of one PostgreSQL schema (each service owns one)."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings, *, pool_size: int = 10) -> AsyncEngine:
    """The process's engine; `pool_pre_ping` lets a service ride out a database restart."""
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"command_timeout": 30, "timeout": 10},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions are per request or per message and never shared across tasks."""
    return async_sessionmaker(engine, expire_on_commit=False)
