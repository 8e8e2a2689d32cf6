"""``mp-nb callbacks …``: ad hoc callback administration from a shell.

Works against the real API or the local one (``MATTERPORT_API_URL``). Output is a table
by default and JSON with ``--json``. The API token secret comes from
``MATTERPORT_TOKEN_SECRET`` or a prompt; a callback's ``credSecret`` from ``MP_NB_CRED_SECRET``
or a prompt — never from argv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .models import Callback

SUBCOMMANDS = ("list", "add", "patch", "remove", "ping", "add-events", "remove-events")


def add_callbacks_parser(sub: Any) -> None:
    c = sub.add_parser("callbacks", help="list, add, patch, remove, ping callbacks")
    c.add_argument("--url", help="Model API URL (default $MATTERPORT_API_URL or the real API)")
    c.add_argument("--token-id", help="API token id (default $MATTERPORT_TOKEN_ID)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cs = c.add_subparsers(title="actions", dest="action", required=True)

    cs.add_parser("list", help="every callback, all pages")

    a = cs.add_parser("add", help="register a callback")
    a.add_argument("callback_url", help="where deliveries go, e.g. https://example.com/hook?x=1")
    _endpoint_options(a)
    a.add_argument("--version", type=int, choices=[1, 2], default=1)

    pa = cs.add_parser("patch", help="change a callback (only what you pass)")
    pa.add_argument("id")
    pa.add_argument("--callback-url", help="new delivery URL")
    _endpoint_options(pa)
    pa.add_argument("--version", type=int, choices=[1, 2])

    for name, text in (("remove", "delete a callback"), ("ping", "send a test event")):
        x = cs.add_parser(name, help=text)
        x.add_argument("id")
    for name in ("add-events", "remove-events"):
        x = cs.add_parser(name, help=f"{name.split('-')[0]} event types of a callback")
        x.add_argument("id")
        x.add_argument("event_types", nargs="+")
    c.set_defaults(func=run)


def _endpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--event", "-e", action="append", dest="event_types",
                   help="event type (repeatable; default: every type of the version)")
    p.add_argument("--cred-type", choices=["basic", "token"])
    p.add_argument("--cred-key", help="user name or header name; the secret is read from "
                                      "$MP_NB_CRED_SECRET or a prompt")
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                   help="additional header sent on every delivery (repeatable)")


def _pairs(items: list[str], what: str) -> dict[str, str] | None:
    from .exceptions import ConfigurationError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{what}: {item!r} is not NAME=VALUE")
        out[key] = value
    return out or None


def run(args: argparse.Namespace) -> int:
    from .cli import CRED_SECRET_ENV, read_secret
    from .client import ModelApiClient

    token_id = args.token_id or os.environ.get("MATTERPORT_TOKEN_ID")
    secret = None
    if not os.environ.get("MATTERPORT_ACCESS_TOKEN"):
        secret = read_secret("MATTERPORT_TOKEN_SECRET", "API token secret: ")
    with ModelApiClient(args.url, token_id, secret) as client:
        action = args.action
        if action == "list":
            return _print(client.callbacks(), args.json)
        if action in ("add", "patch"):
            cred_secret = (read_secret(CRED_SECRET_ENV, "callback credSecret: ", required=action == "add")
                           if args.cred_type else None)
            headers = _pairs(args.header, "--header")
            if action == "add":
                cb = client.add_callback(
                    args.callback_url, args.event_types, version=args.version,
                    cred_type=args.cred_type, cred_key=args.cred_key, cred_secret=cred_secret,
                    additional_headers=headers)
            else:
                kwargs: dict[str, Any] = {}
                if args.cred_type:
                    kwargs.update(cred_type=args.cred_type, cred_key=args.cred_key)
                    if cred_secret:
                        kwargs["cred_secret"] = cred_secret
                cb = client.patch_callback(
                    args.id, url=args.callback_url, event_types=args.event_types,
                    version=args.version, additional_headers=headers, **kwargs)
            return _print([cb], args.json)
        if action == "remove":
            ok = client.remove_callback(args.id)
            print(json.dumps({"id": args.id, "removed": ok}) if args.json else f"removed {args.id}")
            return 0
        if action == "ping":
            ok = client.ping_callback(args.id)
            print(json.dumps({"id": args.id, "delivered": ok}) if args.json
                  else f"ping {args.id}: {'endpoint answered 2xx' if ok else 'NOT delivered'}")
            return 0 if ok else 1
        if action == "add-events":
            return _print([client.add_event_types(args.id, args.event_types)], args.json)
        return _print([client.remove_event_types(args.id, args.event_types)], args.json)


def _print(callbacks: list[Callback], as_json: bool) -> int:
    if as_json:
        print(json.dumps([cb.model_dump(by_alias=True, mode="json") for cb in callbacks], indent=2))
        return 0
    if not callbacks:
        print("(no callbacks)")
        return 0
    rows = [cb.summary() for cb in callbacks]
    cols = ["id", "version", "event_types", "url", "cred_type"]
    widths = {c: max(len(c), *(len(str(r[c] or "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c] or "").ljust(widths[c]) for c in cols))
    sys.stdout.flush()
    return 0
