"""Where the daemons listen unless told otherwise: declared once.

Description:
    The daemons' option defaults, ``postwarden postfix-config`` (the lines that point
    Postfix at the daemons, and its hand-back listener), ``postwarden setup`` (the units it
    writes) and ``make run`` all take their addresses from here. The daemons' addresses are
    Postfix's spelling, ``inet:HOST:PORT`` or ``unix:PATH``.

Security:
    Loopback only: neither Postfix's policy protocol, socketmap nor the milter protocol
    authenticates its client, and /metrics needs no audience beyond the host.
"""

from __future__ import annotations

POLICY = "inet:127.0.0.1:10040"
SOCKETMAP = "inet:127.0.0.1:10041"
MILTER = "inet:127.0.0.1:10042"
POLICYD_METRICS = "inet:127.0.0.1:10043"
MILTER_METRICS = "inet:127.0.0.1:10044"
WEB = "inet:127.0.0.1:10045"  # the web console (behind the site's TLS reverse proxy)
# Postfix's own listener for mail a route hands back (a master.cf service: HOST:PORT).
HANDBACK = "127.0.0.1:10046"

# The directory in Postfix's queue directory for unix sockets that a chrooted smtpd can reach.
SPOOL_SOCKET_DIR = "postwarden"
