"""Emulator of a MISP 2.5 server for the tests: the endpoints PyMISP and misp2sentinel use.

It serves, on 127.0.0.1, what `PyMISP(url, key)` requests when it connects
(`GET /servers/getVersion`, `GET /users/view/me`, `GET /attributes/describeTypes.json`,
and `GET /servers/getPyMISPVersion.json` for old servers), plus
`/events/restSearch`, `/attributes/restSearch`, `/objects/restSearch` and
`/events/view/<id or uuid>`.
Search semantics follow MISP's source at commit bb0909a3 (branch 2.5), quirks included.
The modules `misp_selection`, `misp_filters` and `misp_search` name the MISP function
that each part reproduces.

Tests change the data through hooks that move timestamps as MISP does (an edit sets the
attribute timestamp and unpublishes the event, a local tag changes nothing, publishing
moves only `publish_timestamp`), with a clock they control. They can inject failures and
slow responses, and read every request from `requests`.

Errors have MISP's shape, `{"name": ..., "message": ..., "url": ...}`: 403 for a missing or
wrong API key, 404 for unknown paths, 400 for a restSearch GET without parameters. A
request for a feature the emulator does not reproduce gets 501 rather than a different
result.

Run by hand: `python -m tests.emulators.misp --events DIR --port 8081 --key KEY`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import time
import uuid as uuid_module
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

import orjson
from pymisp.abstract import describe_types

from .base import EmulatorServer, Request, Response
from .faults import Fault, FaultQueue, fault_response
from .misp_instance import DEFAULT_ORG_NAME, DEFAULT_ORG_UUID, MispInstance
from .misp_model import Warninglist
from .misp_parameters import MispHttpError
from .misp_search import search_attributes, search_events, search_objects, view_event
from .misp_semantics import MispInternalError
from .tls import EmulatorTLS

logger = logging.getLogger(__name__)

# MISP accepts only keys of 40 letters and digits (AppController::__loginByAuthKey).
API_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9]{40}$")
DEFAULT_API_KEY = "MispEmulatorTestKey000000000000000000000"
# VERSION.json and AppController::$pyMispVersion at MISP commit bb0909a3.
MISP_VERSION = "2.5.1"
PYMISP_RECOMMENDED_VERSION = "2.5.1"

AUTHENTICATION_FAILED = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header."
INTERNAL_ERROR = "An Internal Error Has Occurred."
INVALID_JSON = "Invalid JSON input. Make sure that the JSON input is a correctly formatted JSON string. This request has been blocked to avoid an unfiltered request."

_CONTROLLERS = ("servers", "users", "attributes", "events", "objects")


_SEARCHES = {"events": search_events, "attributes": search_attributes, "objects": search_objects}


@dataclass
class RecordedRequest:
    """One request the emulator received, for tests to assert on."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any
    """The decoded JSON body, or None when the body is empty or not JSON."""


class _PrefixFault(Fault):
    """A fault for the requests whose path starts with `path_prefix`, after `skip` of them passed."""

    def __init__(self, response: Response, remaining: int, path_prefix: str, skip: int = 0) -> None:
        super().__init__(response, remaining)
        self.path_prefix = path_prefix
        self.skip = skip

    def matches(self, path: str, after_processing: bool) -> bool:
        if not (super().matches(path, after_processing) and path.startswith(self.path_prefix)):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True


@dataclass
class _Delay:
    path_prefix: str
    seconds: float
    remaining: int


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Return `payload` as a JSON response, serialised with orjson.

    orjson writes non-ASCII characters as UTF-8 where `json.dumps` escapes them, which decodes
    to the same values. A payload that orjson rejects (integers beyond 64 bits, keys that are
    not strings) is serialised with `json` instead.
    NOTE: orjson writes NaN and infinities as null where `json.dumps` writes NaN and Infinity.
    """
    try:
        body = orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return Response.json(status, payload, headers)
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def misp_error(status: int, message: str, url: str) -> Response:
    """Return an error in the shape CakePHP's error400/error500 renderers give MISP's API clients."""
    return Response.json(status, {"name": message, "message": message, "url": url})


class MispEmulator(MispInstance, EmulatorServer):
    """A MISP 2.5 server on 127.0.0.1 with one API user, fed from JSON files and test hooks.

    The data, the API user's role and the hooks come from `MispInstance` (see there for
    `clock`, `org_uuid`, `perm_sync`, `site_admin`, `warninglists` and
    `tag_names_case_sensitive`). `events_dir` is loaded at construction. `tls=False`, the
    default, serves plain HTTP. True (a private test CA) or a shared `EmulatorTLS` serves HTTPS.
    """

    def __init__(
        self,
        events_dir: str | Path | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        org_uuid: str = DEFAULT_ORG_UUID,
        org_name: str = DEFAULT_ORG_NAME,
        perm_sync: bool = True,
        site_admin: bool = False,
        tls: EmulatorTLS | bool | None = False,
        warninglists: list[Warninglist] | None = None,
        tag_names_case_sensitive: bool = False,
    ) -> None:
        if not API_KEY_PATTERN.match(api_key):
            raise ValueError(f"invalid MISP API key of {len(api_key)} characters: MISP accepts exactly 40 letters or digits")
        EmulatorServer.__init__(self, host=host, port=port, tls=tls)
        MispInstance.__init__(
            self, clock=clock, org_uuid=org_uuid, org_name=org_name, perm_sync=perm_sync, site_admin=site_admin,
            warninglists=warninglists, tag_names_case_sensitive=tag_names_case_sensitive,
        )
        self.api_key = api_key
        self.instance_uuid = str(uuid_module.uuid4())
        self.requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._delays: list[_Delay] = []
        if events_dir is not None:
            self.load_events(events_dir)

    @property
    def url(self) -> str:
        """Return `scheme://127.0.0.1:port`, the URL to give PyMISP."""
        return self.base_url

    # Fault injection and the request log

    def fail_next(self, path_prefix: str, status: int = 500, count: int = 1, body: Any = None,
                  headers: dict[str, str] | None = None, skip: int = 0) -> None:
        """Respond with `status` to the next `count` requests whose path starts with `path_prefix`,
        after letting `skip` of them through.

        Without `body` the response is a MISP-style error. A dict or list body is sent as
        JSON, a str as text and bytes unchanged.
        """
        if body is None:
            response = misp_error(status, _default_fault_message(status), path_prefix)
            response.headers.update(headers or {})
        else:
            response = fault_response(status, body, headers)
        self._faults.add(_PrefixFault(response, count, path_prefix, skip))

    def disconnect_next(self, path_prefix: str, count: int = 1) -> None:
        """Reset the TCP connection of the next `count` matching requests without a response."""
        self._faults.add(_PrefixFault(Response.reset(), count, path_prefix))

    def slow_next(self, path_prefix: str, seconds: float, count: int = 1) -> None:
        """Wait `seconds` (real time) before handling the next `count` matching requests."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._delays.append(_Delay(path_prefix, seconds, count))

    def clear_faults(self) -> None:
        self._faults.clear()
        with self._lock:
            self._delays.clear()

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        """Return the recorded requests whose path starts with `path_prefix`."""
        with self._lock:
            return [request for request in self.requests if request.path.startswith(path_prefix)]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # Request handling

    def dispatch(self, request: Request) -> Response:
        body_json, body_error = _decode_body(request)
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.path, request.query, dict(request.headers.items()), request.body, body_json))
            delay = self._take_delay(request.path)
        if delay:
            time.sleep(delay)
        fault = self._faults.take(request.path)
        if fault is not None:
            return fault
        try:
            return self._route(request, body_json, body_error)
        except MispHttpError as error:
            logger.info("MISP emulator responded %d to %s %s: %s", error.status, request.method, request.path, error.message)
            return misp_error(error.status, error.message, request.path)
        except MispInternalError as error:
            logger.info("MISP would fail with HTTP 500 on %s %s: %s", request.method, request.path, error)
            return misp_error(500, INTERNAL_ERROR, request.path)

    def _take_delay(self, path: str) -> float:
        for delay in self._delays:
            if path.startswith(delay.path_prefix):
                delay.remaining -= 1
                if delay.remaining == 0:
                    self._delays.remove(delay)
                return delay.seconds
        return 0.0

    def _route(self, request: Request, body: Any, body_error: bool) -> Response:
        segments = [segment for segment in request.path.split("/") if segment]
        # CakePHP reads a ".json" extension on the last segment as the response format.
        if segments and segments[-1].endswith(".json"):
            segments[-1] = segments[-1][: -len(".json")]
        controller = segments[0] if segments else ""
        action = segments[1] if len(segments) > 1 else "index"
        arguments = [segment for segment in segments[2:] if ":" not in segment]
        named = dict(segment.split(":", 1) for segment in segments[2:] if ":" in segment)

        # An unknown controller fails in CakePHP's dispatcher, before MISP authenticates.
        if controller not in _CONTROLLERS:
            return misp_error(404, "Not Found", request.path)
        if not self._authenticated(request):
            return misp_error(403, AUTHENTICATION_FAILED, request.path)
        if body_error:
            raise MispHttpError(405, INVALID_JSON)

        route = (request.method, controller, action)
        if route == ("GET", "servers", "getVersion"):
            return Response.json(200, self._version())
        if route == ("GET", "servers", "getPyMISPVersion"):
            return Response.json(200, {"version": PYMISP_RECOMMENDED_VERSION})
        if route == ("GET", "users", "view"):
            return self._view_user(arguments[0] if arguments else "")
        if route == ("GET", "attributes", "describeTypes"):
            return Response.json(200, {"result": describe_types})
        if request.method in ("GET", "POST") and action == "restSearch" and controller in _SEARCHES:
            search = _SEARCHES[controller]
            accepts_json = "json" in request.headers.get("Accept", "")
            # The payload shares lists with the store, so it is serialised before the lock is released.
            with self._lock:
                result = search(self.search_context(), body, named, request.method, accepts_json)
                return json_response(200, result.payload, result.headers)
        if request.method in ("GET", "POST") and (controller, action) == ("events", "view"):
            with self._lock:
                return json_response(200, view_event(self.search_context(), arguments[0] if arguments else "", body, named))
        logger.warning("MISP emulator has no route for %s %s, so it responds 404", request.method, request.path)
        return misp_error(404, "Not Found", request.path)

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("X-MISP-AUTH") or request.headers.get("Authorization") or ""
        if header[:5].lower() == "basic":
            return False
        keys = [key.strip() for key in header.split(",")]
        return any(API_KEY_PATTERN.match(key) and key == self.api_key for key in keys)

    def _version(self) -> dict[str, Any]:
        return {
            "version": MISP_VERSION,
            "pymisp_recommended_version": PYMISP_RECOMMENDED_VERSION,
            "perm_sync": self.perm_sync,
            "perm_sighting": True,
            "perm_galaxy_editor": False,
            "perm_analyst_data": True,
            "uuid": self.instance_uuid if self.perm_sync else "-",
            "request_encoding": ["gzip"],
            "filter_sightings": True,
        }

    def _view_user(self, user_id: str) -> Response:
        if user_id not in ("me", "1"):
            message = "Invalid user" if self.site_admin else "Invalid user or not authorised."
            return misp_error(404, message, f"/users/view/{user_id}")
        return Response.json(200, self._user_payload())

    def _user_payload(self) -> dict[str, Any]:
        # The keys of UsersController::view for an API client. PyMISP loads User and Role into
        # MISPUser and MISPRole, and the values other than ids, email and flags are placeholders.
        organisation = self.store.own_org
        permissions = {
            "perm_add": True, "perm_modify": True, "perm_modify_org": True, "perm_publish": True,
            "perm_delegate": False, "perm_sync": self.perm_sync, "perm_admin": self.site_admin, "perm_audit": False,
            "perm_full": self.site_admin, "perm_auth": True, "perm_site_admin": self.site_admin,
            "perm_regexp_access": False, "perm_tagger": True, "perm_template": False, "perm_sharing_group": False,
            "perm_tag_editor": True, "perm_sighting": True, "perm_object_template": False, "perm_publish_zmq": False,
            "perm_publish_kafka": False, "perm_decaying": False, "perm_galaxy_editor": False, "perm_warninglist": False,
            "perm_view_feed_correlations": False, "perm_analyst_data": True, "perm_skip_otp": False, "perm_server_sign_in": False,
        }
        return {
            "User": {
                "id": "1", "password": "*****", "org_id": str(organisation.id), "server_id": "0",
                "email": "api-user@emulator.test", "autoalert": False, "invited_by": "0", "gpgkey": None,
                "certif_public": None, "nids_sid": "4000000", "termsaccepted": True, "newsread": "0", "role_id": "5",
                "change_pw": False, "contactalert": False, "disabled": False, "expiration": None, "current_login": "0",
                "last_login": "0", "force_logout": False, "date_created": "0", "date_modified": "0",
                "last_api_access": str(self.now()), "totp": "*****", "hotp_counter": None, "last_pw_change": None,
            },
            "Role": {
                "id": "5", "name": "Sync user" if self.perm_sync else "User", "created": None, "modified": None,
                **permissions, "default_role": False, "memory_limit": "", "max_execution_time": "",
                "restricted_to_site_admin": False, "enforce_rate_limit": False, "rate_limit_count": "0",
                "permission": "3", "permission_description": "publish",
            },
            "UserSetting": [],
            "Organisation": {
                "id": str(organisation.id), "name": organisation.name, "date_created": "", "date_modified": "",
                "description": None, "type": "", "nationality": "", "sector": "", "created_by": "0",
                "uuid": organisation.uuid, "contacts": None, "local": True, "restricted_to_domain": [],
                "landingpage": None,
            },
        }


def _default_fault_message(status: int) -> str:
    if status >= 500:
        return INTERNAL_ERROR
    if status == 403:
        return AUTHENTICATION_FAILED
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _decode_body(request: Request) -> tuple[Any, bool]:
    """Return the decoded JSON body (None when empty) and whether a body was sent that is not valid JSON."""
    body = request.body
    encoding = request.headers.get("Content-Encoding", "").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error):
        return None, True
    if not body.strip():
        return None, False
    try:
        return json.loads(body), False
    except (UnicodeDecodeError, ValueError):
        return None, True


def main(argv: list[str] | None = None) -> None:
    """Run the MISP emulator in the foreground until Ctrl-C."""
    from .launcher import serve_until_interrupted

    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.misp",
        description="Emulate a MISP 2.5 server on 127.0.0.1: the connect calls of PyMISP, /events/restSearch, /attributes/restSearch, /objects/restSearch and /events/view.",
        epilog="Example: python -m tests.emulators.misp --events tests/fixtures/misp --port 8081 --key " + DEFAULT_API_KEY,
    )
    parser.add_argument("--events", help="directory of MISP event JSON files to load (default: start empty)")
    parser.add_argument("--port", type=int, default=8081, help="TCP port on 127.0.0.1; 0 picks a free one (default: 8081)")
    parser.add_argument("--key", default=DEFAULT_API_KEY, help="API key the emulator accepts: 40 letters or digits (default: the built-in test key)")
    parser.add_argument("--tls-dir", help="serve HTTPS with the test CA in this directory (created if missing); without it the emulator serves plain HTTP")
    parser.add_argument("--no-perm-sync", action="store_true", help="give the API user a role without perm_sync")
    arguments = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = EmulatorTLS.create(arguments.tls_dir) if arguments.tls_dir else False
    emulator = MispEmulator(arguments.events, api_key=arguments.key, port=arguments.port, tls=tls, perm_sync=not arguments.no_perm_sync)
    with emulator:
        print(f"MISP emulator: {emulator.url}", flush=True)
        print(f"events loaded: {len(emulator.store.events)}", flush=True)
        if emulator.ca_bundle_path:
            print(f"CA bundle:     {emulator.ca_bundle_path}", flush=True)
        serve_until_interrupted()


if __name__ == "__main__":
    main()
