"""Addresses to coordinates through a Nominatim-compatible HTTP API, with answers cached in PostgreSQL.

`GET {GEOCODER_URL}/search?q=<address>&format=jsonv2&limit=1` answers a JSON list whose first element
holds `lat` and `lon` as decimal strings; an empty list means no such address. The URL is configured
by the operator, so it is called as configured (the public-address guard for webhooks does not apply).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters.tables import GeocodeRow
from services.intake.domain.errors import GeocoderUnavailable
from services.intake.domain.register import Location, normalised_address
from shared import crypto

log = structlog.get_logger(__name__)


@dataclass
class Geocoder:
    """Looks addresses up, asking the HTTP API only when the cache has no fresh answer."""

    url: str
    sessionmaker: async_sessionmaker[AsyncSession]
    cache_key: bytes
    cache_ttl_s: float
    timeout_s: float
    user_agent: str
    # Opened and closed with the app (`session_context`), in the event loop that uses it.
    http: aiohttp.ClientSession | None = None

    async def session_context(self, _: object) -> AsyncIterator[None]:
        """An aiohttp cleanup context: the HTTP client pool lives exactly as long as the app."""
        self.http = aiohttp.ClientSession()
        try:
            yield
        finally:
            await self.http.close()
            self.http = None

    def _key(self, address: str) -> str:
        return crypto.blind_index(self.cache_key, "geocode", normalised_address(address))

    async def locate(self, address: str) -> Location | None:
        """The address's coordinates, or None when the geocoder knows no such address.

        Raises GeocoderUnavailable when it does not answer in time or answers with an error.
        """
        if not normalised_address(address):
            return None
        key = self._key(address)
        async with self.sessionmaker() as session:
            cached = (
                await session.execute(
                    select(GeocodeRow.lat, GeocodeRow.lon).where(
                        GeocodeRow.key == key,
                        GeocodeRow.created_at
                        > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, self.cache_ttl_s),
                    )
                )
            ).one_or_none()
        if cached is not None:
            return Location(cached.lat, cached.lon)
        found = await self._ask(address)
        if found is not None:
            async with self.sessionmaker() as session, session.begin():
                values = {"lat": found.lat, "lon": found.lon, "created_at": func.now()}
                await session.execute(
                    insert(GeocodeRow)
                    .values(key=key, **values)
                    .on_conflict_do_update(index_elements=[GeocodeRow.key], set_=values)
                )
        return found

    async def _ask(self, address: str) -> Location | None:
        if self.http is None:
            raise GeocoderUnavailable()  # the app is starting or stopping
        try:
            async with self.http.get(
                f"{self.url.rstrip('/')}/search",
                params={"q": address, "format": "jsonv2", "limit": "1"},
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                if response.status != 200:
                    log.warning("geocoder.refused", status=response.status)
                    raise GeocoderUnavailable()
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("geocoder.unavailable", error=type(exc).__name__)
            raise GeocoderUnavailable() from exc
        if not isinstance(answer, list):
            log.warning("geocoder.unexpected_answer")
            raise GeocoderUnavailable()
        if not answer:
            return None
        try:
            lat, lon = float(answer[0]["lat"]), float(answer[0]["lon"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("geocoder.unexpected_answer")
            raise GeocoderUnavailable() from exc
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise GeocoderUnavailable()
        return Location(lat, lon)


async def purge_geocode_cache(session: AsyncSession, *, ttl_s: float) -> int:
    """Forget cached coordinates older than the cache's time to live; returns how many."""
    result = await session.execute(
        delete(GeocodeRow)
        .where(GeocodeRow.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, ttl_s))
        .returning(GeocodeRow.key)
    )
    return len(result.all())
