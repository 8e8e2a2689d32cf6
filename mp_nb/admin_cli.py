"""``mp-nb callbacks …`` and ``mp-nb attempts``: ad hoc administration from a shell.

::

    mp-nb callbacks list
    mp-nb callbacks add URL [-e TYPE …] [--version 2] [--cred-type basic --cred-key USER]
                            [--header NAME=VALUE …]
    mp-nb callbacks patch ID [--callback-url URL] [-e TYPE …] [--version N] [--cred-type …]
    mp-nb callbacks remove ID
    mp-nb callbacks ping ID                 exit code 1 if the endpoint did not answer 2xx
    mp-nb callbacks add-events ID TYPE …
    mp-nb callbacks remove-events ID TYPE …
    mp-nb attempts [--callback ID] [--failed]   the local Model API's delivery attempt log

Works against the real API or the local one: ``--url`` or ``MATTERPORT_API_URL``, token id
from ``--token-id`` or ``MATTERPORT_TOKEN_ID``. Output is a table by default and JSON with
``--json`` (before or after the action). Secrets never come from argv: the API token secret
is read from ``MATTERPORT_TOKEN_SECRET`` (or ``MATTERPORT_ACCESS_TOKEN`` for OAuth) or a
hidden prompt, a callback's ``credSecret`` from ``MP_NB_CRED_SECRET`` or a prompt.

Every failure is one line on stderr (``mp-nb: error: …``) and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from .models import Callback

ATTEMPT_TABLE_COLUMNS = ("delivery_id", "attempt", "at", "callback_id", "event_type", "model_id",
                         "status", "latency_ms", "outcome", "error")


def _connection_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--url/--token-id/--json, accepted before and after the action (the action's copy
    uses SUPPRESS so it does not overwrite a value given before it)."""
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument("--url", default=default,
                   help="Model API URL (default $MATTERPORT_API_URL, else the real API)")
    p.add_argument("--token-id", default=default,
                   help="API token id (default $MATTERPORT_TOKEN_ID)")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print JSON instead of a table")
    from .cli import refuse_secret_option

    refuse_secret_option(p, "--token-secret", "MATTERPORT_TOKEN_SECRET")


def add_callbacks_parser(sub: Any) -> None:
    """Register ``callbacks`` (and its actions) on the ``mp-nb`` subparsers."""
    c = sub.add_parser("callbacks", help="list, add, patch, remove, ping callbacks")
    _connection_options(c, top=True)
    cs = c.add_subparsers(title="actions", dest="action", required=True)

    _action(cs, "list", "every callback, all pages")

    a = _action(cs, "add", "register a callback")
    a.add_argument("callback_url", help="where deliveries go, e.g. https://example.com/hook?x=1")
    _endpoint_options(a)
    a.add_argument("--version", type=int, choices=[1, 2], default=1,
                   help="webhook payload version (default 1)")

    pa = _action(cs, "patch", "change a callback (only what you pass)")
    pa.add_argument("id")
    pa.add_argument("--callback-url", help="new delivery URL")
    _endpoint_options(pa)
    pa.add_argument("--version", type=int, choices=[1, 2])

    for name, text in (("remove", "delete a callback"),
                       ("ping", "send a test event; exit 1 unless the endpoint answered 2xx")):
        _action(cs, name, text).add_argument("id")
    for name in ("add-events", "remove-events"):
        x = _action(cs, name, f"{name.split('-')[0]} event types of a callback")
        x.add_argument("id")
        x.add_argument("event_types", nargs="*", metavar="TYPE")
        x.add_argument("--event", "-e", action="append", dest="more_types", default=[],
                       metavar="TYPE", help="event type (repeatable), as for add and patch")
    c.set_defaults(func=run)


def add_attempts_parser(sub: Any) -> None:
    """Register ``attempts``: the local Model API's delivery attempt log."""
    p = sub.add_parser("attempts", help="delivery attempts of a running local Model API")
    _connection_options(p, top=True)
    p.add_argument("--callback", help="only this callback id")
    p.add_argument("--failed", action="store_true",
                   help="only attempts that did not get a 2xx")
    p.set_defaults(func=run_attempts)


def _action(cs: Any, name: str, text: str) -> argparse.ArgumentParser:
    p = cs.add_parser(name, help=text, description=text)
    _connection_options(p, top=False)
    return p


def _endpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--event", "-e", action="append", dest="event_types", metavar="TYPE",
                   help="event type (repeatable; default on add: every type of the version)")
    p.add_argument("--cred-type", choices=["basic", "token"])
    p.add_argument("--cred-key", help="user name or header name; the secret is read from "
                                      "$MP_NB_CRED_SECRET or a prompt")
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                   help="additional header sent on every delivery (repeatable)")
    from .cli import refuse_secret_option

    refuse_secret_option(p, "--cred-secret", "MP_NB_CRED_SECRET")


def _pairs(items: list[str], what: str) -> dict[str, str] | None:
    from .exceptions import ConfigurationError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{what}: {item!r} is not NAME=VALUE")
        if key in out:
            raise ConfigurationError(f"{what}: {key!r} given twice; give each name once")
        out[key] = value
    return out or None


def _client(args: argparse.Namespace) -> Any:
    from .cli import read_secret
    from .client import ModelApiClient

    token_id = args.token_id or os.environ.get("MATTERPORT_TOKEN_ID")
    secret = None
    if not os.environ.get("MATTERPORT_ACCESS_TOKEN"):
        secret = read_secret("MATTERPORT_TOKEN_SECRET", "API token secret: ")
    return ModelApiClient(args.url, token_id, secret)


def run(args: argparse.Namespace) -> int:
    """Run one ``mp-nb callbacks`` action; errors propagate as :class:`MpNbError`."""
    with _client(args) as client:
        action: Callable[[Any, argparse.Namespace], int] = _ACTIONS[args.action]
        return action(client, args)


def _list(client: Any, args: argparse.Namespace) -> int:
    return _print(client.callbacks(), args.json)


def _add_or_patch(client: Any, args: argparse.Namespace) -> int:
    from .cli import CRED_SECRET_ENV, read_secret

    adding = args.action == "add"
    headers = _pairs(args.header, "--header")
    if adding:
        cred_secret = (read_secret(CRED_SECRET_ENV, "callback credSecret: ")
                       if args.cred_type else None)
        cb = client.add_callback(
            args.callback_url, args.event_types, version=args.version,
            cred_type=args.cred_type, cred_key=args.cred_key, cred_secret=cred_secret,
            additional_headers=headers)
    else:  # only what is given changes: a new secret alone (from the environment) rotates it
        kwargs: dict[str, Any] = {}
        if args.cred_type:
            kwargs["cred_type"] = args.cred_type
        if args.cred_key is not None:
            kwargs["cred_key"] = args.cred_key
        secret = (read_secret(CRED_SECRET_ENV, "callback credSecret (blank keeps it): ",
                              required=False)
                  if args.cred_type or os.environ.get(CRED_SECRET_ENV) else None)
        if secret:
            kwargs["cred_secret"] = secret
        cb = client.patch_callback(
            args.id, url=args.callback_url, event_types=args.event_types,
            version=args.version, additional_headers=headers, **kwargs)
    return _print([cb], args.json)


def _remove(client: Any, args: argparse.Namespace) -> int:
    ok = client.remove_callback(args.id)
    print(json.dumps({"id": args.id, "removed": ok}) if args.json else f"removed {args.id}")
    return 0


def _ping(client: Any, args: argparse.Namespace) -> int:
    ok = client.ping_callback(args.id)
    print(json.dumps({"id": args.id, "delivered": ok}) if args.json
          else f"ping {args.id}: {'endpoint answered 2xx' if ok else 'NOT delivered'}")
    return 0 if ok else 1


def _types_given(args: argparse.Namespace) -> list[str]:
    from .exceptions import ConfigurationError

    types = list(args.event_types) + list(args.more_types)
    if not types:
        raise ConfigurationError("event types: name at least one, e.g. "
                                 f"mp-nb callbacks {args.action} ID processed deleted")
    return types


def _add_events(client: Any, args: argparse.Namespace) -> int:
    return _print([client.add_event_types(args.id, _types_given(args))], args.json)


def _remove_events(client: Any, args: argparse.Namespace) -> int:
    return _print([client.remove_event_types(args.id, _types_given(args))], args.json)


_ACTIONS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "list": _list, "add": _add_or_patch, "patch": _add_or_patch, "remove": _remove,
    "ping": _ping, "add-events": _add_events, "remove-events": _remove_events,
}


def run_attempts(args: argparse.Namespace) -> int:
    """Print the attempt log of the local Model API at ``--url``."""
    with _client(args) as client:
        frame = client.local_attempts()
    if args.callback:
        frame = frame[frame["callback_id"] == args.callback]
    if args.failed:
        frame = frame[frame["outcome"].astype(str) != "delivered"]
    if args.json:
        from .cli import frame_json

        print(frame_json(frame))
        return 0
    if frame.empty:
        print("(no delivery attempts)")
        return 0
    shown = frame[list(ATTEMPT_TABLE_COLUMNS)].copy()
    shown["at"] = shown["at"].dt.strftime("%H:%M:%S.%f").str[:-3]
    shown["latency_ms"] = shown["latency_ms"].round(1)
    shown = shown.astype(object).where(shown.notna(), "-")
    print(shown.to_string(index=False))
    return 0


def _print(callbacks: list[Callback], as_json: bool) -> int:
    if as_json:
        print(json.dumps([cb.model_dump(by_alias=True, mode="json") for cb in callbacks], indent=2))
        return 0
    if not callbacks:
        print("(no callbacks)")
        return 0
    rows = [cb.summary() for cb in callbacks]
    cols = ["id", "version", "event_types", "url", "cred_type", "headers"]
    widths = {c: max(len(c), *(len(str(r[c] or "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(str(r[c] or "").ljust(widths[c]) for c in cols).rstrip())
    sys.stdout.flush()
    return 0
