"""The state's 16-byte encoding of STIX ids."""

import uuid

import pytest

from misp2sentinel.state import KIND_PREFIXES, decode_id, encode_id


@pytest.mark.parametrize("prefix", list(KIND_PREFIXES.values()))
def test_decode_id_round_trip(prefix):
    for value in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.uuid4(), uuid.uuid5(uuid.NAMESPACE_URL, "x")):
        stix_id = f"{prefix}{value}"
        kind, blob = encode_id(stix_id)
        assert decode_id(kind, blob) == stix_id


def test_decode_id_matches_uuid_text():
    blob = bytes(range(16))
    assert decode_id(0, blob) == "indicator--" + str(uuid.UUID(bytes=blob))
