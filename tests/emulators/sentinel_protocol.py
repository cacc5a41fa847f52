"""Routes, body parsing and response bodies of the Sentinel upload emulator.

Response shapes come from Microsoft Learn (stix-objects-api and upload-indicators-api)
or the swagger files and examples in Azure/azure-rest-api-specs
(`securityinsights/data-plane`). A NOTE marks each shape that no source documents.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .base import Response
from .stix_validation import LEGACY_TYPES, SUPPORTED_TYPES

API_STIX_OBJECTS = "stix-objects"
API_UPLOAD_INDICATORS = "upload-indicators"
API_UPLOAD_INDICATORS_V2 = "upload-indicators-v2"

STIX_OBJECTS_API_VERSION = "2024-02-01-preview"
LEGACY_API_VERSION = "2022-07-01"

MAX_OBJECTS_PER_REQUEST = 100
MAX_SOURCE_SYSTEM_LENGTH = 256
RESTRICTED_SOURCE_SYSTEM = "Microsoft Sentinel"

# Workspace ids are GUIDs, optionally in braces (swagger `workspaceId` pattern).
WORKSPACE_ID_PATTERN = re.compile(r"^[{]?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}[}]?$")


@dataclass(frozen=True)
class UploadApi:
    """One upload endpoint: its path, query version, array field and accepted types."""

    name: str
    path_pattern: re.Pattern[str]
    api_version: str
    array_field: str
    allowed_types: tuple[str, ...]
    source_system_any_case: bool

    @property
    def is_legacy(self) -> bool:
        return self.name != API_STIX_OBJECTS


STIX_OBJECTS = UploadApi(
    API_STIX_OBJECTS,
    re.compile(r"^/workspaces/(?P<workspace>[^/]+)/threat-intelligence-stix-objects:upload$"),
    STIX_OBJECTS_API_VERSION,
    "stixobjects",
    SUPPORTED_TYPES,
    source_system_any_case=False,
)
# Spellings that Microsoft's connector text and an early swagger draft used. They are
# served only with accept_path_alias=True, because a field report from a user of the real
# service found that they fail.
STIX_OBJECTS_ALIAS_PATTERN = re.compile(
    r"^/workspaces/(?P<workspace>[^/]+)/(threatintelligence-stix-objects|threatintelligencestixobjects):upload$"
)
# The legacy docs table names the field `SourceSystem` while every sample writes
# `sourcesystem`, so the legacy endpoints accept the name in any case.
UPLOAD_INDICATORS = UploadApi(
    API_UPLOAD_INDICATORS,
    re.compile(r"^/(?P<workspace>[^/]+)/threatintelligence:upload-indicators$"),
    LEGACY_API_VERSION,
    "value",
    LEGACY_TYPES,
    source_system_any_case=True,
)
UPLOAD_INDICATORS_V2 = UploadApi(
    API_UPLOAD_INDICATORS_V2,
    re.compile(r"^/workspaces/(?P<workspace>[^/]+)/threatintelligenceindicators:upload$"),
    LEGACY_API_VERSION,
    "indicators",
    LEGACY_TYPES,
    source_system_any_case=True,
)
UPLOAD_APIS = {api.name: api for api in (STIX_OBJECTS, UPLOAD_INDICATORS, UPLOAD_INDICATORS_V2)}


def match_upload_api(path: str, *, accept_path_alias: bool) -> tuple[UploadApi, str] | None:
    """Return the upload API and the raw workspace id that `path` addresses, or None."""
    for api in UPLOAD_APIS.values():
        match = api.path_pattern.match(path)
        if match:
            return api, match.group("workspace")
    if accept_path_alias:
        match = STIX_OBJECTS_ALIAS_PATTERN.match(path)
        if match:
            return STIX_OBJECTS, match.group("workspace")
    return None


def normalize_workspace_id(workspace_id: str) -> str:
    """Return a workspace GUID in lower case without braces."""
    return workspace_id.strip("{}").lower()


def rate_limit_response(wait_seconds: float, *, retry_after_header: bool) -> Response:
    """Build the documented 429 body, with a `Retry-After` header unless switched off.

    The header is not documented for Sentinel; Azure API Management, which fronts the
    legacy host, sends it by default.
    """
    seconds = max(1, math.ceil(wait_seconds))
    headers = {"Retry-After": str(seconds)} if retry_after_header else {}
    return Response.json(429, {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {seconds} seconds."}, headers)


def unauthorized_response() -> Response:
    """Build the 401 body of the legacy swagger example; both APIs use it here."""
    return Response.json(401, {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."})


def path_not_found_response() -> Response:
    # Azure API Management's body for a path or method that matches no operation.
    return Response.json(404, {"statusCode": 404, "message": "Resource not found"})


def workspace_not_found_response(workspace_id: str) -> Response:
    # NOTE: Learn documents 404 for an unknown workspace but not its body; this one is inferred.
    return Response.json(404, {"error": {"code": "WorkspaceNotFound", "message": f"Workspace '{workspace_id}' was not found."}})


def forbidden_response(workspace_id: str, client_id: str, object_id: str) -> Response:
    # NOTE: 403 is not documented; the body follows Azure Resource Manager's AuthorizationFailed.
    message = (
        f"The client '{client_id}' with object id '{object_id}' does not have authorization to perform action "
        f"'Microsoft.SecurityInsights/threatintelligence/write' over scope '/workspaces/{workspace_id}' or the scope is invalid."
    )
    return Response.json(403, {"error": {"code": "AuthorizationFailed", "message": message}})


def bad_request_response(api: UploadApi, code: str, message: str) -> Response:
    """Build a 400 in the shape each API documents.

    STIX objects API: `{"error":{"code","message"}}` plus `x-ms-error-code` (swagger).
    Legacy API: the swagger example's shape with `details`, `target` and `additionalInfo`.
    """
    if api.is_legacy:
        return Response.json(400, {"error": {"code": code, "message": message, "details": [], "target": None, "additionalInfo": None}})
    return Response.json(400, {"error": {"code": code, "message": message}}, {"x-ms-error-code": code})


def payload_too_large_response(size: int, limit: int) -> Response:
    # NOTE: no byte limit or 413 is documented; the cap is an emulator option.
    return Response.json(413, {"error": {"code": "RequestEntityTooLarge", "message": f"The request body of {size} bytes exceeds the limit of {limit} bytes."}})


def default_fault_body(status: int) -> object:
    """Return the body an injected fault sends when the test gives none."""
    if status == 429:
        return {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}
    if status == 401:
        return {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."}
    if status == 503:
        return {"error": {"code": "ServiceUnavailable", "message": "The service is temporarily unavailable. Try again later."}}
    if status == 413:
        return {"error": {"code": "RequestEntityTooLarge", "message": "The request body is too large."}}
    if status >= 500:
        return {"error": {"code": "InternalServerError", "message": "An internal server error occurred."}}
    return {"error": {"code": "BadRequest", "message": "The request was rejected by an injected fault."}}


class UploadRejected(Exception):
    """The request fails as a whole with `response`; `detail` goes to the request log."""

    def __init__(self, response: Response, detail: str, object_count: int | None = None) -> None:
        super().__init__(detail)
        self.response = response
        self.detail = detail
        self.object_count = object_count


def parse_upload_body(body: bytes, api: UploadApi) -> tuple[str, list[Any]]:
    """Return (sourcesystem, objects) of an upload body, or raise UploadRejected with a 400."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UploadRejected(
            bad_request_response(api, "InvalidRequestBodyProperty(RequestBody)", "Body of the request is not in valid JSON format."),
            "body is not valid JSON",
        ) from None
    if not isinstance(payload, dict):
        raise UploadRejected(
            bad_request_response(api, "InvalidRequestBodyProperty(RequestBody)", "Body of the request must be a JSON object."),
            "body is not a JSON object",
        )

    sourcesystem = payload.get("sourcesystem")
    if sourcesystem is None and api.source_system_any_case:
        sourcesystem = next((value for key, value in payload.items() if key.lower() == "sourcesystem"), None)
    if not isinstance(sourcesystem, str) or not sourcesystem.strip():
        raise UploadRejected(
            bad_request_response(api, "InvalidRequestBodyProperty(SourceSystem)", "Required property 'sourcesystem' is missing or empty."),
            "missing sourcesystem",
        )
    if sourcesystem.strip().lower() == RESTRICTED_SOURCE_SYSTEM.lower():
        raise UploadRejected(
            bad_request_response(api, "InvalidRequestBodyProperty(SourceSystem)", f"The source system '{sourcesystem}' is restricted; use the name of your own source."),
            "restricted sourcesystem",
        )
    if len(sourcesystem) > MAX_SOURCE_SYSTEM_LENGTH:
        raise UploadRejected(
            bad_request_response(api, "InvalidRequestBodyProperty(SourceSystem)", f"Property 'sourcesystem' has {len(sourcesystem)} characters; the maximum is {MAX_SOURCE_SYSTEM_LENGTH}."),
            "sourcesystem too long",
        )

    field_name = api.array_field
    objects = payload.get(field_name)
    if not isinstance(objects, list):
        raise UploadRejected(
            bad_request_response(api, f"InvalidRequestBodyProperty({field_name})", f"Required property '{field_name}' is missing or is not an array."),
            f"missing {field_name} array",
        )
    if not objects:
        raise UploadRejected(
            bad_request_response(api, f"InvalidRequestBodyProperty({field_name})", f"Property '{field_name}' must contain at least one object."),
            f"empty {field_name} array",
            0,
        )
    if len(objects) > MAX_OBJECTS_PER_REQUEST:
        raise UploadRejected(
            bad_request_response(api, f"InvalidRequestBodyProperty({field_name})", f"Property '{field_name}' contains {len(objects)} objects; the maximum per request is {MAX_OBJECTS_PER_REQUEST}."),
            f"{len(objects)} objects in one request",
            len(objects),
        )
    return sourcesystem, objects
