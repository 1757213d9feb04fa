"""The fast event-POST transport under ``BolticClient``.

``BolticClient`` (in ``client.py``) is the typed API; this module holds the
transport pieces it sends through:

- ``LazyTLSTransport``: httpx's default transport, its TLS context made only
  when an https URL is requested (spares ~37 ms per run against ``http://``);
- ``PreparedPost``: one POST route (``/streams/events``) with URL, headers,
  timeouts and transport worked out once, so a bulk send (``sender.py``, via
  ``BolticClient.event_sender()``) pays no per-call URL merging or header
  building. Retries, auth, the hook and errors stay ``BolticClient``'s.

It is part of the ``client`` library in design.md's import table.
"""

from __future__ import annotations

import copy

from boltic_cli._compat import skip_httpx_cli

skip_httpx_cli()

import httpx

from boltic_cli._compat import httpx_transport_for_url


class LazyTLSTransport(httpx.BaseTransport):
    """httpx's default transport, with its TLS context made only when https is used.

    Loading the CA bundle costs about 37 ms, which a command against the local
    ``http://`` server would pay on every run for nothing. An https request (the
    hosted API, or an absolute URL given to ``boltic api``) still gets the
    verifying transport httpx would have made.
    """

    def __init__(self) -> None:
        self._plain: httpx.HTTPTransport | None = None
        self._tls: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            if self._tls is None:
                self._tls = httpx.HTTPTransport()
            return self._tls.handle_request(request)
        if self._plain is None:
            # verify=False only spares the CA bundle: this transport never sees https.
            self._plain = httpx.HTTPTransport(verify=False)
        return self._plain.handle_request(request)

    def close(self) -> None:
        for transport in (self._plain, self._tls):
            if transport is not None:
                transport.close()


class PreparedPost:
    """One POST route with its URL, headers, timeouts and transport worked out once.

    ``send`` hands the request to the transport httpx.Client would pick for the URL
    (a proxy's, when the environment names one). The client's cookies, auth flow and
    redirect handling are skipped: the API uses none of them, and they cost as much
    CPU per request as the rest of the client.
    """

    def __init__(self, http: httpx.Client, url: httpx.URL) -> None:
        self.url = url
        self.headers = httpx.Headers(http.headers)
        self.headers["Content-Type"] = "application/json"
        self.extensions = {"timeout": http.timeout.as_dict()}
        self.transport: httpx.BaseTransport | None = httpx_transport_for_url(http, url)
        self._http = http
        self._owns_transport = False

    def with_transport(self, transport: httpx.BaseTransport) -> PreparedPost:
        """The same route over ``transport``, which it closes on ``close()``."""
        other = copy.copy(self)
        other.transport = transport
        other._owns_transport = True
        return other

    def close(self) -> None:
        if self._owns_transport and self.transport is not None:
            self.transport.close()

    def request(self, payload: bytes, idempotency_key: str) -> httpx.Request:
        headers = self.headers.copy()
        headers["Idempotency-Key"] = idempotency_key
        return httpx.Request(
            "POST", self.url, headers=headers, content=payload, extensions=self.extensions
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        if self.transport is None:  # an httpx without the private picker
            return self._http.send(request)
        response = self.transport.handle_request(request)
        response.request = request
        return response
