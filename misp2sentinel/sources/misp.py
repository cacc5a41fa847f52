"""Pull events from a MISP server with PyMISP's `restSearch`.

Only the global filter goes to MISP. Each workspace's selection, the published policy, `to_ids`,
attribute types and warninglists are applied by the bridge after fetching, because MISP's own
filters hide exactly the changes the bridge must see: a `to_ids` switched off looks like a deleted
attribute, and an edit unpublishes its event.

Paging is done in two steps. The changed events are listed cheaply (`metadata`, uuid and
timestamp only), then fetched in chunks by uuid with `deleted` and `includeWarninglistHits`, so an
event edited while pages are read cannot shift an offset and be skipped; it carries a new
timestamp and is picked up by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from misp2sentinel.clock import Clock
from misp2sentinel.config import MispServer, TagFilter
from misp2sentinel.errors import MispError
from misp2sentinel.sources.normalize import events_from_document, normalize_event

log = logging.getLogger(__name__)


def _tag_query(tags: TagFilter) -> dict | None:
    if tags.is_empty():
        return None
    query = {}
    if tags.or_:
        query["OR"] = list(tags.or_)
    if tags.and_:
        query["AND"] = list(tags.and_)
    if tags.not_:
        query["NOT"] = list(tags.not_)
    return query


class MispSource:
    """A connection to one MISP server through PyMISP."""

    def __init__(self, settings: MispServer, clock: Clock | None = None) -> None:
        # PyMISP and requests cost start-up time, so only commands that reach MISP import them.
        import requests
        from pymisp import MISPServerError, PyMISP, PyMISPError

        self.settings = settings
        self.clock = clock or Clock()
        self._server_error = MISPServerError
        self._requests = requests
        self._pymisp_error = PyMISPError
        verify = str(settings.ca_bundle) if settings.ca_bundle else settings.verify_tls
        # An explicit proxy wins over the proxy environment variables, which PyMISP also reads.
        proxy = settings.https_proxy.get_secret_value() if settings.https_proxy is not None else None
        proxies = {"http": proxy, "https": proxy} if proxy else None
        if not settings.verify_tls:
            log.warning("TLS verification is off for MISP at %s; anyone on the path can read the API key", settings.url)
        try:
            self.api = PyMISP(
                settings.url,
                settings.key.get_secret_value(),
                ssl=verify,
                proxies=proxies,
                timeout=settings.timeout_seconds,
                tool="misp2sentinel",
            )
        except (PyMISPError, requests.RequestException) as error:
            raise MispError(
                f"cannot connect to MISP at {settings.url}: {self._describe(error)}",
                hint="check misp.url, misp.key and TLS trust (misp.ca_bundle); the key needs API access",
            ) from None

    @property
    def name(self) -> str:
        return f"misp:{self.settings.url}"

    def _describe(self, error: Exception) -> str:
        text = str(error)
        key = self.settings.key.get_secret_value()
        if key and key in text:
            text = text.replace(key, "[redacted]")
        return f"{type(error).__name__}: {text[:500]}"

    def _search(self, **query) -> list:
        """Run one `/events/restSearch` and return its list of events; raise MispError on failure.

        A 5xx response, a dropped connection or a timeout is retried up to `misp.max_attempts`
        times, waiting `misp.retry_seconds` and then twice as long each time.
        """
        attempt = 1
        while True:
            try:
                result = self.api.search(controller="events", return_format="json", **query)
                break
            except (self._server_error, self._requests.ConnectionError, self._requests.Timeout) as error:
                if attempt >= self.settings.max_attempts:
                    raise MispError(
                        f"MISP search at {self.settings.url} failed after {attempt} attempts: {self._describe(error)}",
                        hint="check the MISP server's health and logs; the next run starts from the same cursor",
                    ) from None
                delay = self.settings.retry_seconds * 2 ** (attempt - 1)
                log.warning("MISP search failed (%s); retrying in %.0f s (attempt %d of %d)",
                            type(error).__name__, delay, attempt + 1, self.settings.max_attempts)
                self.clock.sleep(delay)
                attempt += 1
            except (self._pymisp_error, self._requests.RequestException) as error:
                not_api = isinstance(error, self._pymisp_error)
                raise MispError(
                    f"MISP search at {self.settings.url} failed: {self._describe(error)}",
                    hint="MISP answered with something other than its JSON API (an error page of a proxy, or a cut-off "
                    "body); the next run starts from the same cursor" if not_api else None,
                ) from None
        if isinstance(result, dict) and "errors" in result:
            status, detail = result["errors"] if isinstance(result["errors"], (list, tuple)) and len(result["errors"]) == 2 else ("?", result["errors"])
            message = detail.get("message") if isinstance(detail, dict) else detail
            hint = "check misp.key and its role" if status in (401, 403) else None
            raise MispError(f"MISP at {self.settings.url} refused the search (HTTP {status}): {message}", hint=hint)
        if isinstance(result, dict):
            result = result.get("response", [])
        if not isinstance(result, list):
            raise MispError(f"MISP at {self.settings.url} returned an unexpected search response of type {type(result).__name__}")
        return result

    def _global_filter(self) -> dict:
        selection = self.settings.filter
        query = {}
        tags = _tag_query(selection.tags)
        if tags:
            query["tags"] = tags
        if selection.orgs:
            query["org"] = list(selection.orgs)
        return query

    def list_changed(self, since: int | None, until: int) -> dict[str, int]:
        """Return {event uuid: Event.timestamp} of the events changed in [since, until].

        Under the published-only policy, events published in the window are listed too, because
        publishing moves only `publish_timestamp`. With `since` None, every event is listed.
        """
        fields = ["timestamp"]
        if self.settings.published_only and since is not None:
            fields.append("publish_timestamp")
        listed: dict[str, int] = {}
        for field in fields:
            window = {field: [since, until]} if since is not None else {}
            for event in self._list_pages(window):
                listed[event["uuid"]] = max(event["timestamp"] or 0, listed.get(event["uuid"], 0))
        return listed

    def catalogue(self) -> dict[str, dict]:
        """Return {event uuid: normalised event metadata} of every event the global filter selects.

        One paged `metadata` query: each event comes with its tags, creator org, distribution and
        timestamps but no attributes, so listing even a large MISP stays cheap.
        """
        return {event["uuid"]: event for event in self._list_pages({})}

    def _list_pages(self, window: dict) -> Iterator[dict]:
        page_size = self.settings.list_page_size
        page = 1
        while True:
            batch = self._search(metadata=True, limit=page_size, page=page, **window, **self._global_filter())
            for item in batch:
                event = item.get("Event", item) if isinstance(item, dict) else {}
                if event.get("uuid"):
                    yield normalize_event(event)
            if len(batch) < page_size:
                return
            page += 1

    def fetch(self, uuids: list[str], on_error=None) -> Iterator[dict]:
        """Yield the full, normalised events of `uuids`, fetched in chunks, with deleted
        attributes and warninglist hits included so that the bridge can see them.

        The next chunk is fetched in a background thread while the caller maps and uploads the
        current one, so uploads start after the first chunk and MISP and Sentinel work at once;
        at most two chunks are held in memory. When a chunk still fails after its retries,
        `on_error(uuids of the chunk, error)` is called and the next chunk is used; without
        `on_error` the error is raised.
        """
        size = self.settings.fetch_chunk_size
        chunks = [uuids[start:start + size] for start in range(0, len(uuids), size)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="misp-fetch") as pool:
            future = pool.submit(self._fetch_chunk, chunks[0])
            for index, part in enumerate(chunks):
                following = pool.submit(self._fetch_chunk, chunks[index + 1]) if index + 1 < len(chunks) else None
                try:
                    events = future.result()
                except (MispError, ValueError) as error:
                    if on_error is None:
                        if following is not None:
                            following.cancel()
                        raise
                    on_error(part, error)
                    events = []
                yield from events
                future = following

    def _fetch_chunk(self, uuids: list[str]) -> list[dict]:
        result = self._search(uuid=uuids, deleted=[0, 1], includeWarninglistHits=True)
        return events_from_document(result)

    def fetch_one(self, reference: str) -> dict | None:
        """Fetch one event by numeric id or uuid; return None when MISP does not have it."""
        query = {"eventid": reference} if reference.isdigit() else {"uuid": reference}
        result = self._search(deleted=[0, 1], includeWarninglistHits=True, **query)
        events = events_from_document(result) if result else []
        return events[0] if events else None
