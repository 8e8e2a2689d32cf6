"""A public HTTPS URL for a receiver, through an ngrok tunnel (optional extra ``mp_nb[tunnel]``).

Matterport must reach the receiver from the internet; a kernel on a laptop or in a private
network is not reachable. :func:`open_tunnel` starts ngrok's agent (via pyngrok) for the
receiver's port and returns the URL to register. The receiver must have credentials: anyone
who learns the URL can post to it. See ``docs/exposure.md`` for the options and their risks.

The ngrok account token comes from the ``authtoken`` argument or ``NGROK_AUTHTOKEN`` (never
from a notebook cell's visible source: use ``getpass``). pyngrok fetches ngrok's agent on first
use, so this needs outbound internet access; mybinder.org forbids tunnels, use it locally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["PublicUrl", "open_tunnel"]


@dataclass
class PublicUrl:
    """The public callback URL and a way to close the tunnel behind it."""

    url: str
    _public: str = field(repr=False)

    def close(self) -> None:
        """Close the tunnel (the receiver keeps running on loopback)."""
        from pyngrok import ngrok

        ngrok.disconnect(self._public)

    def __str__(self) -> str:
        return self.url


def open_tunnel(receiver: Any, *, authtoken: str | None = None, **options: Any) -> PublicUrl:
    """Open an HTTPS ngrok tunnel to ``receiver`` and return its public callback URL.

    ``options`` go to ``pyngrok.ngrok.connect`` (e.g. ``domain=...`` on paid plans).
    Register ``.url`` as the callback, smoke-test it with ``ping_callback``, and ``close()``
    it when done.
    """
    if getattr(receiver, "cred_type", None) is None:
        raise ConfigurationError(
            "receiver: a public URL needs credentials; start the Receiver with "
            "cred_type/cred_key/cred_secret and register the callback with the same ones"
        )
    if not receiver.running or not receiver.port:
        raise ConfigurationError("receiver: start it first (Receiver(..., start=True))")
    try:
        from pyngrok import conf, ngrok
    except ImportError as exc:
        raise ConfigurationError(
            "open_tunnel needs pyngrok: pip install 'mp_nb[tunnel]'"
        ) from exc
    token = authtoken or os.environ.get("NGROK_AUTHTOKEN")
    if not token:
        raise ConfigurationError(
            "authtoken: ngrok needs an account token; pass authtoken=getpass() "
            "or set NGROK_AUTHTOKEN"
        )
    conf.get_default().auth_token = token
    tunnel = ngrok.connect(f"127.0.0.1:{receiver.port}", "http", **options)
    public = str(tunnel.public_url)
    https = public.replace("http://", "https://", 1)
    return PublicUrl(url=https.rstrip("/") + receiver.path, _public=public)
