"""Pull events from a MISP server with PyMISP's `restSearch`.

Only the global filter goes to MISP. Each workspace's selection, the published policy, `to_ids`,
attribute types and warninglists are applied by the bridge after fetching, because MISP's own
filters hide exactly the changes the bridge must see: a `to_ids` switched off looks like a deleted
attribute, and an edit unpublishes its event.

Paging is done in two steps. The changed events are listed cheaply (`metadata`, uuid and
timestamp only), then fetched in chunks by uuid with `deleted` and `includeWarninglistHits`, so an
event edited while pages are read cannot shift an offset and be skipped; it carries a new
timestamp and is picked up by the next run.

An event whose `attribute_count` is above `misp.large_event_attributes` would make one huge
response, which MISP may fail to build and which the bridge would hold whole. Such an event is
fetched on its own (see `misp_paging`): its metadata from `/events/restSearch`, its attributes
from `/attributes/restSearch` in pages, and its objects' metadata from `/objects/restSearch`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from misp2sentinel.clock import Clock
from misp2sentinel.config import MispServer, TagFilter
from misp2sentinel.errors import MispAnswerError, MispError
from misp2sentinel.sources.misp_paging import EventPager
from misp2sentinel.sources.normalize import events_from_document, normalize_event, to_int

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
        # Event uuid -> MISP's attribute_count, from every listing of this source.
        self._attribute_counts: dict[str, int] = {}
        self._local_tags_hidden: bool | None = None
        self._pager = EventPager(self._search, self._search_attributes, self._search_objects,
                                 settings.attribute_page_size, self._hides_local_tags)
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
        """Run one `/events/restSearch` and return its list of events; raise MispError on failure."""
        result = self._rest_search("events", query)
        if isinstance(result, dict):
            result = result.get("response", [])
        if not isinstance(result, list):
            raise MispError(f"MISP at {self.settings.url} returned an unexpected search response of type {type(result).__name__}")
        return result

    def _search_attributes(self, **query) -> list:
        """Run one `/attributes/restSearch` and return its list of attributes; raise MispError on failure."""
        result = self._rest_search("attributes", query)
        attributes = result.get("Attribute") if isinstance(result, dict) else None
        if not isinstance(attributes, list):
            raise MispError(f"MISP at {self.settings.url} returned an unexpected attribute search response of type {type(result).__name__}")
        return attributes

    def _search_objects(self, **query) -> list:
        """Run one `/objects/restSearch` and return its list of `{"Object": ...}`; raise MispError on failure."""
        result = self._rest_search("objects", query)
        if not isinstance(result, list):
            raise MispError(f"MISP at {self.settings.url} returned an unexpected object search response of type {type(result).__name__}")
        return result

    def _rest_search(self, controller: str, query: dict):
        """Run one restSearch of `controller` and return PyMISP's decoded response.

        A 5xx response, a dropped connection or a timeout is retried up to `misp.max_attempts`
        times, waiting `misp.retry_seconds` and then twice as long each time. Other failures and
        MISP's error responses raise MispError at once.
        """
        attempt = 1
        while True:
            try:
                result = self.api.search(controller=controller, return_format="json", **query)
                break
            except (self._server_error, self._requests.ConnectionError, self._requests.Timeout) as error:
                if attempt >= self.settings.max_attempts:
                    raise MispError(
                        f"MISP search at {self.settings.url} failed after {attempt} attempts: {self._describe(error)}",
                        hint="check the MISP server's health and logs; the next run starts from the same cursor",
                    ) from None
                delay = self.settings.retry_seconds * 2 ** (attempt - 1)
                log.warning("MISP %s search failed (%s); retrying in %.0f s (attempt %d of %d)",
                            controller, type(error).__name__, delay, attempt + 1, self.settings.max_attempts)
                self.clock.sleep(delay)
                attempt += 1
            except (self._pymisp_error, self._requests.RequestException) as error:
                not_api = isinstance(error, self._pymisp_error)
                raise (MispAnswerError if not_api else MispError)(
                    f"MISP search at {self.settings.url} failed: {self._describe(error)}",
                    hint="MISP answered with something other than its JSON API (an error page of a proxy, or a cut-off "
                    "body); the next run starts from the same cursor" if not_api else None,
                ) from None
        if isinstance(result, dict) and "errors" in result:
            status, detail = result["errors"] if isinstance(result["errors"], (list, tuple)) and len(result["errors"]) == 2 else ("?", result["errors"])
            message = detail.get("message") if isinstance(detail, dict) else detail
            hint = "check misp.key and its role" if status in (401, 403) else None
            raise MispError(f"MISP at {self.settings.url} refused the search (HTTP {status}): {message}", hint=hint)
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
                    self._remember_attribute_count(event)
                    yield normalize_event(event)
            if len(batch) < page_size:
                return
            page += 1

    def _remember_attribute_count(self, event: dict) -> None:
        count = to_int(event.get("attribute_count"))
        if count is not None:
            self._attribute_counts[str(event["uuid"])] = count

    def _is_large(self, event_uuid: str) -> bool:
        count = self._attribute_counts.get(event_uuid)
        return count is not None and count > self.settings.large_event_attributes

    def fetch(self, uuids: list[str], on_error=None) -> Iterator[dict]:
        """Yield the full, normalised events of `uuids`, with deleted attributes and warninglist
        hits included so that the bridge can see them.

        Events are fetched by uuid in chunks of at most `misp.fetch_chunk_size` events and
        `misp.large_event_attributes` attributes. A larger event is fetched on its own, in pages.
        The next chunk or paged event is fetched in a background thread while the caller maps
        and uploads the current one, so uploads start early and MISP and Sentinel work at once;
        at most two are held in memory. When one still fails after its retries,
        `on_error(uuids of the chunk, error)` is called and the next one is used; without
        `on_error` the error is raised.
        """
        self._learn_attribute_counts(uuids)
        jobs = self._plan_jobs(uuids)
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="misp-fetch") as pool:
            future = pool.submit(self._run_job, jobs[0])
            for index, job in enumerate(jobs):
                following = pool.submit(self._run_job, jobs[index + 1]) if index + 1 < len(jobs) else None
                try:
                    events = future.result()
                except (MispError, ValueError) as error:
                    if on_error is None:
                        if following is not None:
                            following.cancel()
                        raise
                    if not job.paged and len(job.uuids) > 1 and isinstance(error, (MispAnswerError, ValueError)):
                        # One event that MISP cannot send as valid JSON must not hold back the rest
                        # of its chunk on every run, so each is fetched alone.
                        log.warning("fetching %d event(s) from MISP together failed, so each is fetched alone: %s",
                                    len(job.uuids), error)
                        events = self._fetch_each(job.uuids, on_error)
                    else:
                        on_error(job.uuids, error)
                        events = []
                yield from events
                future = following

    def _fetch_each(self, uuids: list[str], on_error) -> list[dict]:
        """Fetch events one by one, reporting each that fails to `on_error`."""
        events: list[dict] = []
        for event_uuid in uuids:
            try:
                events.extend(self._run_job(_FetchJob([event_uuid], paged=False)))
            except (MispError, ValueError) as error:
                on_error([event_uuid], error)
        return events

    def _learn_attribute_counts(self, uuids: list[str]) -> None:
        """Read the `attribute_count` of the events no listing of this run returned.

        Events left pending by an earlier run are often not listed again, and a large one among
        them must not be fetched whole. One cheap `metadata` request per `misp.list_page_size`
        events reads their counts; when it fails, they are fetched in chunks as before.
        """
        unknown = [event_uuid for event_uuid in uuids if event_uuid not in self._attribute_counts]
        size = self.settings.list_page_size
        for start in range(0, len(unknown), size):
            try:
                batch = self._search(metadata=True, uuid=unknown[start:start + size])
            except MispError as error:
                log.warning("could not read the attribute counts of %d event(s), so they are fetched in chunks: %s",
                            len(unknown) - start, error.message)
                return
            for item in batch:
                event = item.get("Event", item) if isinstance(item, dict) else {}
                if event.get("uuid"):
                    self._remember_attribute_count(event)

    def _plan_jobs(self, uuids: list[str]) -> list[_FetchJob]:
        """Group `uuids` into chunks, and give each large event a paged job of its own."""
        max_events = self.settings.fetch_chunk_size
        max_attributes = self.settings.large_event_attributes
        jobs: list[_FetchJob] = []
        chunk: list[str] = []
        chunk_attributes = 0
        for event_uuid in uuids:
            if self._is_large(event_uuid):
                jobs.append(_FetchJob([event_uuid], paged=True))
                continue
            count = self._attribute_counts.get(event_uuid, 0)
            if chunk and (len(chunk) >= max_events or chunk_attributes + count > max_attributes):
                jobs.append(_FetchJob(chunk, paged=False))
                chunk, chunk_attributes = [], 0
            chunk.append(event_uuid)
            chunk_attributes += count
        if chunk:
            jobs.append(_FetchJob(chunk, paged=False))
        return jobs

    def _run_job(self, job: _FetchJob) -> list[dict]:
        if job.paged:
            return self._fetch_paged(job.uuids[0])
        try:
            return self._fetch_chunk(job.uuids)
        except MispError as error:
            # A lone event with more attributes than one page may be what MISP failed to build
            # (its memory or time limit ends in a plain 500), so it is tried once more in pages.
            event_uuid = job.uuids[0]
            if len(job.uuids) > 1 or self._attribute_counts.get(event_uuid, 0) <= self.settings.attribute_page_size:
                raise
            log.warning("fetching MISP event %s whole failed, so its attributes are fetched in pages: %s",
                        event_uuid, error.message)
            try:
                return self._fetch_paged(event_uuid)
            except MispError as paged_error:
                raise MispError(f"{error.message}; fetching it in pages failed too: {paged_error.message}",
                                hint=paged_error.hint) from None

    def _fetch_chunk(self, uuids: list[str]) -> list[dict]:
        result = self._search(uuid=uuids, deleted=[0, 1], includeWarninglistHits=True)
        return events_from_document(result)

    def _fetch_paged(self, event_uuid: str) -> list[dict]:
        log.info("fetching MISP event %s (%s attributes) in pages of %d attributes", event_uuid,
                 self._attribute_counts.get(event_uuid, "?"), self.settings.attribute_page_size)
        try:
            event = self._pager.fetch(event_uuid)
        except MispError as error:
            raise MispError(f"fetching MISP event {event_uuid} in pages failed: {error.message}", hint=error.hint) from None
        return [event] if event is not None else []

    def _hides_local_tags(self) -> bool:
        """Return whether MISP leaves local tags out of whole events for this API key.

        `Event::fetchEvent` does so for a role with `perm_sync` that is not a site admin. The
        attribute search never does, so the paged fetch drops them itself.
        """
        if self._local_tags_hidden is None:
            try:
                answer = self.api.get_user("me", pythonify=True, expanded=True)
            except (self._pymisp_error, self._requests.RequestException) as error:
                raise MispError(f"reading the API user's role from MISP at {self.settings.url} failed: {self._describe(error)}") from None
            if not isinstance(answer, tuple) or len(answer) != 3:
                raise MispError(f"MISP at {self.settings.url} sent no role for the API user: {str(answer)[:200]}")
            role = answer[1]
            self._local_tags_hidden = bool(getattr(role, "perm_sync", False)) and not bool(getattr(role, "perm_site_admin", False))
        return self._local_tags_hidden

    def fetch_one(self, reference: str) -> dict | None:
        """Fetch one event by numeric id or uuid; return None when MISP does not have it.

        A cheap `metadata` request comes first, so that a large event is fetched in pages.
        """
        numeric = reference.isascii() and reference.isdigit()
        if numeric and int(reference) == 0:
            # MISP reads eventid 0 as no filter and returns every event.
            return None
        query = {"eventid": reference} if numeric else {"uuid": reference}
        for item in self._search(metadata=True, **query):
            event = item.get("Event", item) if isinstance(item, dict) else {}
            if event.get("uuid") and _is_event(event, reference):
                self._remember_attribute_count(event)
                if self._is_large(str(event["uuid"])):
                    events = self._fetch_paged(str(event["uuid"]))
                    return events[0] if events else None
        result = self._search(deleted=[0, 1], includeWarninglistHits=True, **query)
        events = events_from_document(result) if result else []
        # Only the event asked for counts: a search that ignored the filter returns others.
        matching = [event for event in events if _is_event(event, reference)]
        return matching[0] if matching else None


def _is_event(event: dict, reference: str) -> bool:
    """Tell whether `event` is the one a numeric id or uuid `reference` names."""
    return reference.lower() in (str(event.get("id")), str(event.get("uuid")).lower())


@dataclass(frozen=True)
class _FetchJob:
    """Events fetched in one request (a chunk), or one large event fetched in pages."""

    uuids: list[str]
    paged: bool
