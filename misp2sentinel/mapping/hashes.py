"""Hash and fingerprint algorithms: their STIX hash key, their shape and the digest of empty content.

STIX 2.1's hash vocabulary (hash-algorithm-ov) names MD5, SHA-1, SHA-256, SHA-512, SHA3-256,
SHA3-512, SSDEEP and TLSH. Every other algorithm keeps its MISP name as a custom hash key, because
a key must name the algorithm that made the value. misp-stix writes `sha512/224` as `SHA-224` and
`sha512/256` as `SHA-256`, which are different algorithms with the same digest length. STIX
dictionary keys allow only letters, digits, `-` and `_`, so the `/` of `sha512/224` becomes `-`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

HEX_DIGITS = frozenset("0123456789abcdef")
UPPER_HEX_DIGITS = frozenset("0123456789ABCDEF")
HEX_PAIRS = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})+$")
SSDEEP = re.compile(r'^(\d{1,10}):([A-Za-z0-9/+]{0,64}):([A-Za-z0-9/+]{0,64})(?:,".*")?$')
TLSH_HEX_LENGTHS = (70, 74, 134, 138)
VHASH = re.compile(r"^[0-9a-z]{10,256}$")


def _hex(length: int) -> Callable[[str], str | None]:
    def normalise(text: str) -> str | None:
        if ":" in text and HEX_PAIRS.match(text):
            # Fingerprints are often written as colon-separated octets (AB:CD:...).
            text = text.replace(":", "")
        text = text.lower()
        if len(text) == length and HEX_DIGITS.issuperset(text):
            return text
        return None

    return normalise


def _ssdeep(text: str) -> str | None:
    match = SSDEEP.match(text)
    if match is None:
        return None
    # A trailing `,"file name"` is ssdeep's output format, not part of the hash.
    return f"{match.group(1)}:{match.group(2)}:{match.group(3)}"


def _tlsh(text: str) -> str | None:
    upper = text.upper()
    digits = upper[2:] if upper.startswith("T1") else upper
    if len(digits) in TLSH_HEX_LENGTHS and UPPER_HEX_DIGITS.issuperset(digits):
        return upper
    return None


def _vhash(text: str) -> str | None:
    lowered = text.lower()
    return lowered if VHASH.match(lowered) else None


@dataclass(frozen=True, slots=True)
class HashAlgorithm:
    """The check and the STIX hash key of one MISP hash type."""

    key: str
    shape: str
    normalise: Callable[[str], str | None]
    in_vocabulary: bool
    empty_content: str | None = None

    @property
    def path(self) -> str:
        """Return the pattern path below `hashes`, quoted so that every key parses."""
        return f"hashes.'{self.key}'"


def _empty(name: str) -> str:
    return hashlib.new(name, b"").hexdigest()


HASH_ALGORITHMS: dict[str, HashAlgorithm] = {
    "md5": HashAlgorithm("MD5", "32 hexadecimal digits", _hex(32), True, _empty("md5")),
    "sha1": HashAlgorithm("SHA-1", "40 hexadecimal digits", _hex(40), True, _empty("sha1")),
    "sha224": HashAlgorithm("sha224", "56 hexadecimal digits", _hex(56), False, _empty("sha224")),
    "sha256": HashAlgorithm("SHA-256", "64 hexadecimal digits", _hex(64), True, _empty("sha256")),
    "sha384": HashAlgorithm("sha384", "96 hexadecimal digits", _hex(96), False, _empty("sha384")),
    "sha512": HashAlgorithm("SHA-512", "128 hexadecimal digits", _hex(128), True, _empty("sha512")),
    "sha512/224": HashAlgorithm("sha512-224", "56 hexadecimal digits", _hex(56), False, _empty("sha512_224")),
    "sha512/256": HashAlgorithm("sha512-256", "64 hexadecimal digits", _hex(64), False, _empty("sha512_256")),
    "sha3-224": HashAlgorithm("sha3-224", "56 hexadecimal digits", _hex(56), False, _empty("sha3_224")),
    "sha3-256": HashAlgorithm("SHA3-256", "64 hexadecimal digits", _hex(64), True, _empty("sha3_256")),
    "sha3-384": HashAlgorithm("sha3-384", "96 hexadecimal digits", _hex(96), False, _empty("sha3_384")),
    "sha3-512": HashAlgorithm("SHA3-512", "128 hexadecimal digits", _hex(128), True, _empty("sha3_512")),
    # The ssdeep of empty input is "3::" (block size 3, both hashes empty).
    "ssdeep": HashAlgorithm("SSDEEP", "block size:hash:hash", _ssdeep, True, "3::"),
    "tlsh": HashAlgorithm("TLSH", "70, 74, 134 or 138 hexadecimal digits, optionally after T1", _tlsh, True),
    "imphash": HashAlgorithm("imphash", "32 hexadecimal digits", _hex(32), False),
    "authentihash": HashAlgorithm("authentihash", "64 hexadecimal digits", _hex(64), False),
    "pehash": HashAlgorithm("pehash", "40 hexadecimal digits", _hex(40), False),
    "cdhash": HashAlgorithm("cdhash", "40 hexadecimal digits", _hex(40), False),
    "vhash": HashAlgorithm("vhash", "10 to 256 letters and digits", _vhash, False),
    "impfuzzy": HashAlgorithm("impfuzzy", "block size:hash:hash", _ssdeep, False),
    "telfhash": HashAlgorithm("telfhash", "70, 74, 134 or 138 hexadecimal digits, optionally after T1", _tlsh, False),
}

# Fingerprints that are not hashes of a file; they are checked like hashes but have no STIX object.
FINGERPRINTS: dict[str, HashAlgorithm] = {
    "ja3-fingerprint-md5": HashAlgorithm("ja3-fingerprint-md5", "32 hexadecimal digits", _hex(32), False),
    "hassh-md5": HashAlgorithm("hassh-md5", "32 hexadecimal digits", _hex(32), False),
    "hasshserver-md5": HashAlgorithm("hasshserver-md5", "32 hexadecimal digits", _hex(32), False),
    "jarm-fingerprint": HashAlgorithm("jarm-fingerprint", "62 hexadecimal digits", _hex(62), False),
}

# Every algorithm by name, for value checks; MISP's x509 fingerprint types reuse md5, sha1 and sha256.
ALL_ALGORITHMS: dict[str, HashAlgorithm] = {**HASH_ALGORITHMS, **FINGERPRINTS}

EMPTY_CONTENT_DIGESTS: dict[str, str] = {
    name: algorithm.empty_content for name, algorithm in HASH_ALGORITHMS.items() if algorithm.empty_content
}
