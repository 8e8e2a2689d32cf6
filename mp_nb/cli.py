"""The ``mp-nb`` command.

::

    mp-nb demo                      the whole lifecycle on the local Model API
    mp-nb local-api [--port P]      run the local Model API until Ctrl-C
    mp-nb receive [--port P]        run a receiver, print one line per event
    mp-nb events --db FILE          export a store as a table, CSV or JSON
    mp-nb callbacks list|add|patch|remove|ping|add-events|remove-events
    mp-nb attempts [--url U]        delivery attempt log of a running local Model API

Secrets (``MATTERPORT_TOKEN_SECRET``, a receiver's or callback's ``credSecret``) come from
the environment or a hidden prompt, never from the command line, where they would end up
in shell history and process listings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import queue
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .exceptions import MpNbError

CRED_SECRET_ENV = "MP_NB_CRED_SECRET"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MpNbError as exc:
        print(f"mp-nb: error: {in_cli_words(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be written or read, a port that is taken
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"mp-nb: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


#: Python names in shared error messages, and what a shell user types instead.
_CLI_WORDS = (
    ("cred_type/cred_key/cred_secret", f"--cred-type, --cred-key and {CRED_SECRET_ENV}"),
    ("cred_key/cred_secret", f"--cred-key and {CRED_SECRET_ENV}"),
    ("patch_callback: nothing to change; pass url, event_types, version, credentials, "
     "query_params or additional_headers",
     "nothing to change; pass --callback-url, -e, --version, --cred-type/--cred-key or --header"),
    ("use an id from client.callbacks()", "use an id from mp-nb callbacks list"),
    ("callback_id:", "id:"),
    ("path: no store at", "--db: no store at"),
    ("path: expected", "--db: expected"),
)


def in_cli_words(message: str) -> str:
    """An error message with the Python argument names it mentions replaced by CLI options."""
    for python, cli in _CLI_WORDS:
        message = message.replace(python, cli)
    return message


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mp-nb", description="Matterport model-event webhooks, locally.")
    p.add_argument("--version", action="version", version=f"mp-nb {__version__}")
    sub = p.add_subparsers(title="commands")

    d = sub.add_parser("demo", help="run the whole webhook lifecycle on the local Model API")
    d.add_argument("--models", type=_positive, default=3, help="models to simulate (default 3)")
    d.add_argument("--db", help="event store file (default: a new temporary file)")
    d.set_defaults(func=_demo)

    la = sub.add_parser("local-api", help="run the local Model API until interrupted")
    la.add_argument("--port", type=_port, default=8765, help="port (default 8765, 0 = any)")
    la.add_argument("--host", default="127.0.0.1")
    la.add_argument("--token-id", help="token id to accept (default: generated)")
    la.add_argument("--seed", type=int, help="seed for simulated ids")
    la.add_argument("--simulate", type=_count, default=0, metavar="N",
                    help="after start, run N model lifecycles every --every seconds")
    la.add_argument("--every", type=_seconds, default=10.0,
                    help="seconds between simulation rounds (at least 0.1, default 10)")
    la.add_argument("--allow-remote-delivery", action="store_true",
                    help="deliver to non-loopback hosts too (off by default)")
    la.set_defaults(func=_local_api)

    r = sub.add_parser("receive", help="run a receiver and print each event as it arrives")
    r.add_argument("--port", type=_port, default=0)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--path", default="/webhook")
    r.add_argument("--db", help="store file (default: ./mp_nb_events.sqlite3)",
                   default="mp_nb_events.sqlite3")
    r.add_argument("--cred-type", choices=["basic", "token"])
    r.add_argument("--cred-key",
                   help=f"user name or header name; the secret comes from ${CRED_SECRET_ENV} or a prompt")
    r.add_argument("--max-body", type=_positive, default=1024 * 1024)
    refuse_secret_option(r, "--cred-secret", CRED_SECRET_ENV)
    r.add_argument("--json", action="store_true", help="print each event as a JSON line")
    r.add_argument("--count", type=_count, default=0, help="exit after N events (0 = run until Ctrl-C)")
    r.set_defaults(func=_receive)

    e = sub.add_parser("events", help="print or export the events of a store file")
    e.add_argument("--db", required=True)
    e.add_argument("--format", choices=["table", "csv", "json", "parquet"],
                   help="default: from the --output suffix (.csv, .json/.jsonl, .parquet), "
                        "else table")
    e.add_argument("--type", action="append", help="only these event types (repeatable)")
    e.add_argument("--model", help="only this model id")
    e.add_argument("--rejections", action="store_true", help="the rejected requests instead")
    e.add_argument("--output", "-o", help="write to this file instead of stdout")
    e.set_defaults(func=_events)

    from .admin_cli import add_attempts_parser, add_callbacks_parser

    add_callbacks_parser(sub)
    add_attempts_parser(sub)
    return p


def _bounded(kind: type, low: float, high: float | None, name: str, problem: str) -> Any:
    """An argparse type: ``kind(text)`` within ``low`` to ``high``; argparse shows ``name`` in
    "invalid <name> value: 'x'" and ``problem`` for a value out of bounds."""
    def parse(text: str) -> Any:
        value = kind(text)
        if not (value >= low and (high is None or value <= high)):  # also refuses nan
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name
    return parse


_positive = _bounded(int, 1, None, "positive integer", "must be at least 1")
_port = _bounded(int, 0, 65535, "port number", "port must be 0-65535")
_count = _bounded(int, 0, None, "count", "must be 0 or more")
_seconds = _bounded(float, 0.1, None, "number of seconds", "must be at least 0.1 seconds")


class _RefusedSecret(argparse.Action):
    """A secret typed on the command line: refused, saying where it goes instead."""

    def __init__(self, option_strings: list[str], dest: str, env: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.env = env

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string}: secrets never go on the command line (they end up in "
                     f"shell history and process lists); set {self.env}, or leave it out to "
                     "be prompted")


def refuse_secret_option(parser: argparse.ArgumentParser, option: str, env: str) -> None:
    """Make ``option`` an explicit, explained refusal instead of "unrecognized arguments"."""
    parser.add_argument(option, action=_RefusedSecret, env=env, dest=f"_refused{option}")


def read_secret(env: str, prompt: str, *, required: bool = True) -> str | None:
    """A secret from the environment or, on a terminal, a hidden prompt."""
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if value:
            return value
    if required:
        empty = " (it is set but empty)" if env in os.environ else ""
        raise _usage(f"set {env}{empty} (or run on a terminal to be prompted) to give the secret")
    return None


def _usage(message: str) -> MpNbError:
    from .exceptions import ConfigurationError

    return ConfigurationError(message)


# ---------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.models, out=sys.stdout, db=args.db)


def _local_api(args: argparse.Namespace) -> int:
    from .local_api import LocalModelApi

    secret = os.environ.get("MATTERPORT_TOKEN_SECRET") if args.token_id else None
    api = LocalModelApi(port=args.port, host=args.host, token_id=args.token_id,
                        token_secret=secret, seed=args.seed,
                        allow_remote_delivery=args.allow_remote_delivery)
    print(f"local Model API listening on {api.url}")
    from ._server import is_loopback

    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}, beyond this machine; anyone who can reach "
              "it and knows the token can manage callbacks", file=sys.stderr)
    print("use it with:")
    for name, value in (("MATTERPORT_API_URL", api.url), ("MATTERPORT_TOKEN_ID", api.token_id),
                        ("MATTERPORT_TOKEN_SECRET", api.token_secret)):
        print(f"  export {name}={shlex.quote(value)}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(args.every if args.simulate else 3600)
            if args.simulate:
                api.simulate.lifecycle(args.simulate)
    finally:
        api.stop()


def _receive(args: argparse.Namespace) -> int:
    from .receiver import Receiver

    secret = read_secret(CRED_SECRET_ENV, "callback credSecret: ") if args.cred_type else None
    lines: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    receiver = Receiver(args.path, cred_type=args.cred_type, cred_key=args.cred_key,
                        cred_secret=secret, port=args.port, host=args.host, db=args.db,
                        max_body=args.max_body, start=False)
    receiver.store.on_commit(lines.put)
    receiver.start()
    print(f"receiving on {receiver.url}  (store {receiver.db_path})", flush=True)
    seen = 0
    refused = receiver.store.rejection_count()  # only refusals from now on are printed
    try:
        while not args.count or seen < args.count:
            try:
                ids = lines.get(timeout=0.5)
            except queue.Empty:
                ids = []
            out: list[tuple[Any, str]] = []  # (received_at, line): both kinds in time order
            for row in receiver.store.rows(ids):
                out.append((row["received_at"], _json_line(row) if args.json else _event_line(row)))
                seen += 1
            if receiver.store.rejection_count() > refused:
                new = receiver.rejections().iloc[refused:]
                refused += len(new)
                out += [(rej["received_at"], _refusal_line(rej, args.json))
                        for rej in new.to_dict("records")]
            for _, line in sorted(out, key=lambda item: item[0]):
                print(line, flush=True)
    finally:
        receiver.stop()
    return 0


def _refusal_line(rej: dict[str, Any], as_json: bool) -> str:
    """One refused request (wrong secret, bad JSON …), so a misconfigured sender is visible."""
    if as_json:
        keep = ("id", "received_at", "status", "reason", "method", "path", "remote")
        return _json_line({"refused": True, **{k: rej[k] for k in keep}})
    when = str(rej["received_at"])[11:23]
    method, path, reason = (_shown(rej[k]) for k in ("method", "path", "reason"))
    return f"{when}  refused {rej['status']} {method or '-'} {path}: {reason}"


def _event_line(row: dict[str, Any]) -> str:
    when = str(row.get("received_at", ""))[11:23]
    flags = " ping" if row.get("ping") else ""
    flags += f" duplicate-of={row['duplicate_of']}" if row.get("duplicate_of") else ""
    success = "" if row.get("success") is None else f" success={bool(row['success'])}"
    kind = _shown(row.get("type")) or "(no type)"
    return (f"{when}  #{row['id']:<6} {kind:<24} "
            f"{_shown(row.get('model_id')) or '-':<12}{success}{flags}")


def _format_for(output: str | None) -> str:
    """The ``mp-nb events`` format an output file's suffix asks for (table otherwise)."""
    suffix = Path(output).suffix.lower() if output else ""
    return {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(
        suffix, "table")


def frame_json(frame: Any, *, lines: bool = False) -> str:
    """A DataFrame as JSON records (ISO times), without pandas' escaping of ``/``."""
    text = frame.to_json(orient="records", lines=lines, date_format="iso")
    return text.replace("\\/", "/").rstrip("\n")


def _shown(value: Any) -> str:
    """Text from a sender made safe for a terminal: control characters (line breaks, escape
    sequences) are printed as escapes, so a request cannot forge or colour lines."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _json_line(row: dict[str, Any]) -> str:
    """One JSON line: times in ISO 8601 UTC (as ``mp-nb events --format json``), flags as booleans."""
    def plain(value: Any) -> Any:
        if hasattr(value, "isoformat"):
            return value.isoformat().replace("+00:00", "Z")
        return str(value)

    flags = {k: bool(row[k]) for k in ("ping", "out_of_order") if k in row}
    return json.dumps({**row, **flags}, default=plain)


def _events(args: argparse.Namespace) -> int:
    from .store import open_store

    store = open_store(args.db)
    fmt = args.format or _format_for(args.output)
    if args.rejections and (args.type or args.model or fmt == "parquet"):
        raise _usage("--rejections: --type, --model and parquet apply to events only")
    if fmt == "parquet":
        if not args.output:
            raise _usage("--format parquet: give --output FILE.parquet")
        store.export(args.output, format="parquet", types=args.type or None, model_id=args.model)
        return 0
    if args.rejections:
        frame = store.rejections()
    else:
        frame = store.events(types=args.type or None, model_id=args.model)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "csv":
            frame.to_csv(out, index=False)
        elif fmt == "json":
            if len(frame):  # pandas writes a blank line for no rows
                print(frame_json(frame, lines=True), file=out)
        else:
            cols = ["id", "received_at", "type", "model_id", "success"] if not args.rejections else [
                "id", "received_at", "status", "reason"]
            table = frame[cols].to_string(index=False) if len(frame) else "(no rows)"
            print("\n".join(_shown(line) for line in table.split("\n")), file=out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
