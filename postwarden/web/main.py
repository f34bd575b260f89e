"""``postwarden-web``: the web console's entry point (options, logging, the uvicorn server).

Description:
    ``postwarden-web [--store URL] [--settings F] [--state-dir D] [--listen ADDR]
    [--tls-cert F --tls-key F]
    [--trusted-proxy IP,...] [--dkim-nameserver HOST[:PORT]] [--syslog]``

    ADDR is ``inet:HOST:PORT`` (default ``inet:127.0.0.1:10045``, loopback) or ``unix:PATH``.
    With ``--tls-cert``/``--tls-key`` the console speaks HTTPS itself; otherwise put it behind
    a TLS reverse proxy (``postfix-conf/nginx/postwarden-web.conf``) and name the proxy with
    ``--trusted-proxy`` so its ``X-Forwarded-Proto``/``-For`` are believed (cookies are then
    Secure, and the login throttle counts the real client). The server is uvicorn, one
    process: the settings store's lock serialises edits, the state database keeps sessions.

Settings read:
    None of its own; it edits the settings file through the service layer.

Security:
    Run it as the service user (systemd unit ``postwarden-web.service``), which must be able
    to replace the settings file (its directory group-writable for that user). It refuses to
    listen on a non-loopback address without TLS unless a trusted proxy is named.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from postwarden import listeners, log
from postwarden.errors import PostwardenError
from postwarden.server import BadAddress, ListenAddress, daemon_parser, open_daemon_store
from postwarden.util import sdnotify
from postwarden.web.app import create_app
from postwarden.web.render import WebConfig

logger = logging.getLogger(__name__)
DEFAULT_LISTEN = listeners.WEB


def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        "postwarden-web",
        "The postwarden web console: per-domain Send/Receive settings pages.",
        metrics=None,
        drops_privileges=False,
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="ADDR",
        help="inet:HOST:PORT or unix:PATH (default %(default)s: loopback only)",
    )
    parser.add_argument("--tls-cert", type=Path, metavar="F", help="serve HTTPS: certificate")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="serve HTTPS: private key")
    parser.add_argument(
        "--trusted-proxy",
        metavar="IP,...",
        default="",
        help="reverse proxies whose X-Forwarded-Proto/-For are believed",
    )
    parser.add_argument(
        "--postfix-config-dir",
        metavar="DIR",
        default=os.environ.get("MAIL_CONFIG"),
        help="the Postfix instance a route must not point back at (env MAIL_CONFIG; default"
        " /etc/postfix)",
    )
    parser.add_argument(
        "--dkim-nameserver",
        metavar="HOST[:PORT]",
        help="ask this DNS server when authenticating DKIM keys (default: authoritative)",
    )
    return parser


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_config(args: argparse.Namespace) -> uvicorn.Config:
    """The uvicorn configuration; refuses an exposed plaintext listener."""
    listen = ListenAddress.parse(args.listen)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadAddress("--tls-cert and --tls-key go together")
    if (
        listen.host
        and not _is_loopback(listen.host)
        and not args.tls_cert
        and not args.trusted_proxy
    ):
        raise BadAddress(
            f"{args.listen} is not loopback: serve TLS (--tls-cert/--tls-key) or name the"
            " TLS reverse proxy in front (--trusted-proxy)"
        )
    store = open_daemon_store(args)
    store.read()  # fail at start, not at the first page
    app = create_app(
        WebConfig(
            store,
            dkim_nameserver=args.dkim_nameserver,
            postfix_config_dir=args.postfix_config_dir,
        )
    )
    trusted = [p for p in args.trusted_proxy.replace(",", " ").split() if p]
    return uvicorn.Config(
        app,
        host=listen.host or "127.0.0.1",
        port=listen.port or 0,
        uds=listen.path or None,
        ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
        ssl_keyfile=str(args.tls_key) if args.tls_key else None,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        date_header=False,
        log_config=None,
        access_log=False,
        limit_concurrency=200,
        timeout_graceful_shutdown=5,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.setup("postwarden-web", level=args.log_level, syslog=args.syslog)
    try:
        config = server_config(args)
    except (PostwardenError, OSError) as exc:  # a bad start: one line, exit 1
        logger.critical("%s", exc)
        return 1
    if os.geteuid() == 0:
        # Root would switch its effective user per state-database access, which threads
        # serving pages at once must not do: the console runs as the state's owner.
        owner = args.state_dir.stat().st_uid if args.state_dir.exists() else 0
        if owner != 0:
            logger.critical(
                "running as root: run postwarden-web as the owner of %s (the service user)",
                args.state_dir,
            )
            return 1
        logger.warning("running as root: run postwarden-web as the service user instead")
    logger.info("listening on %s%s", args.listen, " (TLS)" if args.tls_cert else "")
    return asyncio.run(_serve(uvicorn.Server(config), args.listen))


async def _serve(server: uvicorn.Server, where: str) -> int:
    """Run uvicorn; tell systemd when it listens, and ping its watchdog from the loop."""
    loop = asyncio.get_running_loop()
    # systemctl reload: nothing to re-read (every page reads the store), but never die of it.
    loop.add_signal_handler(
        signal.SIGHUP, lambda: logger.info("reload: nothing to do, pages read the store")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return 1  # it could not listen; uvicorn logged why
        await asyncio.sleep(0.05)
    sdnotify.notify("READY=1", f"STATUS=serving on {where}")
    interval = sdnotify.watchdog_interval()
    while not task.done():
        if interval:
            sdnotify.notify("WATCHDOG=1")
        await asyncio.wait({task}, timeout=interval or 3600)
    sdnotify.notify("STOPPING=1")
    await task
    return 0


if __name__ == "__main__":
    sys.exit(main())
