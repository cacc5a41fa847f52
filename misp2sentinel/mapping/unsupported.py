"""MISP attribute types that become no indicator, each with the reason.

Every type in MISP's describeTypes list is either in `types.BUILDERS` or here; a test checks it
against PyMISP's copy of the list. A type MISP adds later is skipped as unsupported until it is
mapped.
"""

from __future__ import annotations

_NOT_OBSERVABLE = "free text or a description, not an observable"
_PERSONAL = "personal or travel data, not an observable"
_FINANCIAL = "a financial identifier that Sentinel cannot match in logs"
_CONTEXT = "context for analysts (an actor, a campaign, a vulnerability), not an observable"
_TARGET = "describes a victim, not the threat"
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(
        ["text", "comment", "other", "hex", "float", "integer", "counter", "boolean", "datetime", "uuid",
         "anonymised", "cortex", "process-state", "email-mime-boundary", "email-thread-index", "mime-type",
         "cookie", "git-commit-id", "gene", "pgp-public-key", "pgp-private-key",
         "ssh-fingerprint", "dkim", "dkim-signature", "pdb"],
        _NOT_OBSERVABLE,
    ),
    **dict.fromkeys(
        ["first-name", "middle-name", "last-name", "full-name", "date-of-birth", "place-of-birth", "gender",
         "passport-number", "passport-country", "passport-expiration", "redress-number", "nationality",
         "visa-number", "issue-date-of-the-visa", "primary-residence", "country-of-residence",
         "special-service-request", "frequent-flyer-number", "travel-details", "payment-details",
         "place-port-of-original-embarkation", "place-port-of-clearance",
         "place-port-of-onward-foreign-destination", "passenger-name-record-locator-number",
         "identity-card-number", "phone-number", "jabber-id", "twitter-id", "eppn"],
        _PERSONAL,
    ),
    **dict.fromkeys(
        ["btc", "dash", "xmr", "iban", "bic", "bank-account-nr", "aba-rtn", "bin", "cc-number", "prtn"],
        _FINANCIAL,
    ),
    **dict.fromkeys(
        ["threat-actor", "campaign-name", "campaign-id", "malware-type", "vulnerability", "weakness", "cpe"],
        _CONTEXT,
    ),
    **dict.fromkeys(
        ["target-user", "target-email", "target-machine", "target-org", "target-location", "target-external"],
        _TARGET,
    ),
    **dict.fromkeys(
        ["whois-registrant-email", "whois-registrant-phone", "whois-registrant-name", "whois-registrant-org",
         "whois-registrar", "whois-creation-date", "dns-soa-email"],
        "WHOIS or DNS registration data, which STIX 2.1 has no observable for",
    ),
    **dict.fromkeys(
        ["pattern-in-file", "pattern-in-traffic", "pattern-in-memory", "filename-pattern"],
        "a byte or text pattern, which a STIX equality comparison cannot express",
    ),
    **dict.fromkeys(
        ["bro", "zeek", "kusto-query", "stix2-pattern"],
        "a rule language that Sentinel's STIX indicators do not carry, or a pattern that would need parsing to check",
    ),
    **dict.fromkeys(
        ["windows-scheduled-task", "windows-service-name", "windows-service-displayname", "named pipe"],
        "a Windows artefact without a STIX 2.1 observable property",
    ),
    **dict.fromkeys(
        ["community-id", "favicon-mmh3", "dom-hash", "mobile-application-id", "azure-application-id",
         "chrome-extension-id", "edge-extension-id", "github-repository", "github-organisation",
         "mac-eui-64"],
        "no STIX 2.1 observable and no agreed custom form yet",
    ),
}
