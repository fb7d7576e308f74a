"""Cross-origin requests (CORS), decided once for every adapter (no I/O here).

A page served from another origin reads a channel's SSE stream (``EventSource``,
with or without ``withCredentials``), its documents, and publishes to it (a JSON
``POST``, which browsers preflight) when the channels allow that origin::

    Channels(cors_origins=["https://app.example"], cors_credentials=True)

The :class:`CORSPolicy` is declared once per :class:`~tornadose.http.channels.Channels`;
each endpoint gets a :class:`CrossOrigin` (the policy and the methods the endpoint
serves) from :func:`tornadose.http.routes.cross_origin`, and both adapters carry
out the same two decisions:

* :meth:`CrossOrigin.preflight`: an ``OPTIONS`` request with ``Origin`` and
  ``Access-Control-Request-Method`` is answered here, before any other rule (no
  authorize hook: browsers send no credentials with a preflight). Allowed (origin
  listed, method served by the endpoint, every requested header allowed): ``204``
  with ``Access-Control-Allow-Origin``/``-Methods``/``-Headers``/``-Max-Age`` (and
  ``-Credentials: true`` with credentials). Refused: ``403`` JSON ``cors_refused``
  naming what is not allowed, without any ``Access-Control-Allow-*`` header, so the
  browser never sends the request. An ``OPTIONS`` that is not a preflight gets the
  endpoint's usual ``405``.
* :meth:`CrossOrigin.headers`: every other answer of the endpoint (the SSE stream,
  its refusals, publish results, documents, the ``404`` of an unknown channel)
  carries ``Access-Control-Allow-Origin`` when the request's ``Origin`` is allowed
  (the origin itself; ``*`` when any origin may read without credentials), with
  credentials ``Access-Control-Allow-Credentials: true``, and ``Vary: Origin``
  whenever the answer depends on the origin. A request from an origin not allowed
  is served as before but without those headers: the browser hides the answer
  from the page (a cross-origin JSON ``POST`` is preflighted, so it is never sent;
  a form post without preflight is refused ``415``: publishing takes only
  ``application/json``).

Credentials (cookies, HTTP authentication) are allowed only for listed origins:
``"*"`` with credentials is refused when declared, since it would let every site
read with the user's cookies.

WebSocket has no CORS: browsers open a WebSocket to any origin, always with the
user's cookies, and the server decides by the ``Origin`` header
(:func:`tornadose.http.websocket.origin_allowed`, a channel's ``allowed_origins``).
:func:`websocket_origins` relates the two: a channel without ``allowed_origins``
accepts the CORS origins on its WebSocket when the policy allows credentials (the
same origins are then trusted with the user's cookies either way); without
credentials its WebSocket stays same-origin, unless the channel lists
``allowed_origins`` itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tornadose.http.answer import Answer, error_answer

__all__ = [
    "ANY_ORIGIN",
    "DEFAULT_ALLOWED_HEADERS",
    "DEFAULT_MAX_AGE",
    "CORSPolicy",
    "CrossOrigin",
    "is_preflight",
    "websocket_origins",
]

#: The origin that stands for every origin.
ANY_ORIGIN = "*"

#: The request headers a cross-origin page may send besides the CORS-safelisted
#: ones: the publish body's type, credentials for the authorize hook, and the id an
#: ``EventSource`` resumes from.
DEFAULT_ALLOWED_HEADERS = ("Content-Type", "Authorization", "Last-Event-ID")

#: Seconds a browser may cache a preflight answer (Chromium caps it at 7200).
DEFAULT_MAX_AGE = 600

_VARY_ORIGIN = ("Vary", "Origin")


def _origin(value: str) -> str:
    """``value`` as browsers send it in ``Origin`` (lower-case ``scheme://host[:port]``);
    ``ValueError`` for anything else (a path, even ``/``, would never match)."""
    if value == ANY_ORIGIN:
        return value
    parts = urlsplit(value)
    if (
        not parts.scheme
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or value != value.strip()
    ):
        raise ValueError(
            f"a CORS origin is 'scheme://host[:port]' (no path, not even '/') or '*': {value!r}"
        )
    if parts.port is not None and parts.port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        raise ValueError(
            f"a CORS origin names no default port (browsers send "
            f"{parts.scheme.lower()}://{parts.hostname}, which would never match): {value!r}"
        )
    return value.lower()


#: The ports browsers leave out of ``Origin``.
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class CORSPolicy:
    """Which other origins may read and publish, and with what.

    ``origins``: the origins (``scheme://host[:port]``, as the ``Origin`` header
    has them) whose pages may make cross-origin requests, or ``"*"`` for any;
    ``credentials``: whether they may send cookies and HTTP authentication (and
    read the answers to such requests); ``headers``: the request headers they may
    send (case-insensitive, besides the CORS-safelisted ones); ``max_age``: seconds
    a preflight answer may be cached. Checked when declared: ``ValueError`` for a
    malformed origin, no origin, or ``"*"`` with credentials.
    """

    origins: tuple[str, ...]
    credentials: bool = False
    headers: tuple[str, ...] = DEFAULT_ALLOWED_HEADERS
    max_age: int = DEFAULT_MAX_AGE
    _lower_headers: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.origins, str):
            raise TypeError("origins is a collection of origins, not one string")
        origins = tuple(dict.fromkeys(_origin(origin) for origin in self.origins))
        if not origins:
            raise ValueError("a CORS policy needs at least one origin (or '*')")
        if self.credentials and ANY_ORIGIN in origins:
            raise ValueError(
                "'*' with credentials would let every site read with the user's cookies: "
                "list the origins"
            )
        if self.max_age < 0:
            raise ValueError(f"max_age must not be negative, not {self.max_age}")
        headers = tuple(dict.fromkeys(name.strip() for name in self.headers))
        if not all(headers):
            raise ValueError("an allowed header name must not be empty")
        object.__setattr__(self, "origins", origins)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "_lower_headers", frozenset(h.lower() for h in headers))

    @classmethod
    def of(
        cls,
        origins: Iterable[str] | None,
        *,
        credentials: bool = False,
        headers: Iterable[str] = (),
    ) -> CORSPolicy | None:
        """The policy of :class:`~tornadose.http.channels.Channels`' options: ``None``
        without ``origins`` (same-origin only); ``headers`` are allowed besides
        :data:`DEFAULT_ALLOWED_HEADERS`."""
        if origins is None:
            if credentials or tuple(headers):
                raise ValueError("cors_credentials and cors_headers need cors_origins")
            return None
        if isinstance(origins, str):
            raise TypeError("cors_origins is a collection of origins, not one string")
        allowed = (*DEFAULT_ALLOWED_HEADERS, *headers)
        return cls(tuple(origins), credentials=credentials, headers=allowed)

    @property
    def any_origin(self) -> bool:
        """Whether every origin may make requests without credentials (``"*"``)."""
        return ANY_ORIGIN in self.origins

    def allows(self, origin: str | None) -> bool:
        """Whether a page from ``origin`` (the ``Origin`` header) may read answers."""
        if origin is None:
            return False
        return self.any_origin or origin.lower() in self.origins

    def allow_origin(self, origin: str) -> tuple[tuple[str, str], ...]:
        """The headers granting an allowed ``origin`` (see :meth:`CrossOrigin.headers`)."""
        if self.any_origin:  # never with credentials: refused when declared
            return (("Access-Control-Allow-Origin", ANY_ORIGIN),)
        granted = [("Access-Control-Allow-Origin", origin), _VARY_ORIGIN]
        if self.credentials:
            granted.append(("Access-Control-Allow-Credentials", "true"))
        return tuple(granted)

    def refused_headers(self, requested: str) -> list[str]:
        """The names in an ``Access-Control-Request-Headers`` value not allowed."""
        names = (name.strip() for name in requested.split(","))
        return [name for name in names if name and name.lower() not in self._lower_headers]


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request is a CORS preflight: ``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method`` (``headers``: lower-case names)."""
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


@dataclass(frozen=True, slots=True)
class CrossOrigin:
    """The CORS rules of one endpoint: the channels' :class:`CORSPolicy` and the
    methods the endpoint serves (empty: nothing to preflight, as at an unknown path,
    whose ``404`` still carries the headers)."""

    policy: CORSPolicy
    methods: tuple[str, ...]

    def preflight(self, method: str, headers: Mapping[str, str]) -> Answer | None:
        """The answer to a preflight (see the module docstring), or ``None`` if the
        request is not one (or the endpoint serves no method): the adapter goes on
        with its usual rules. ``headers``: lower-case names."""
        if not self.methods or not is_preflight(method, headers):
            return None
        origin = headers["origin"]
        wanted = headers["access-control-request-method"].strip()
        refused = self.policy.refused_headers(headers.get("access-control-request-headers", ""))
        if not self.policy.allows(origin):
            return _refused(f"origin {origin!r} may not make cross-origin requests here")
        if wanted not in self.methods:
            return _refused(f"{wanted} is not served here; use {', '.join(self.methods)}")
        if refused:
            return _refused(f"request headers not allowed: {', '.join(refused)}")
        granted = (
            *self.policy.allow_origin(origin),
            ("Access-Control-Allow-Methods", ", ".join(self.methods)),
            ("Access-Control-Allow-Headers", ", ".join(self.policy.headers)),
            ("Access-Control-Max-Age", str(self.policy.max_age)),
        )
        return Answer(204, b"", granted)

    def headers(self, method: str, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The CORS headers of every answer to a request that is not a preflight
        (a preflight's come from :meth:`preflight`). ``headers``: lower-case names."""
        if is_preflight(method, headers):
            return ()
        origin = headers.get("origin")
        if origin is not None and self.policy.allows(origin):
            return self.policy.allow_origin(origin)
        return () if self.policy.any_origin else (_VARY_ORIGIN,)


def _refused(detail: str) -> Answer:
    return error_answer(403, "cors_refused", detail, _VARY_ORIGIN)


def websocket_origins(
    allowed_origins: Collection[str] | None, policy: CORSPolicy | None
) -> Collection[str] | None:
    """The origins, besides the page's own, that may open a channel's WebSocket: the
    channel's ``allowed_origins`` when given; else the CORS origins when the policy
    allows credentials (see the module docstring); else ``None`` (same-origin)."""
    if allowed_origins is not None:
        return allowed_origins
    if policy is not None and policy.credentials:
        return policy.origins
    return None
