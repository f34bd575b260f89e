"""postwarden-milter: DKIM signing, regex spam tagging, header rewrites, gateway original IP.

The protocol (:mod:`~postwarden.milter.protocol`, :mod:`~postwarden.milter.server`) carries
what Postfix sends to the per-connection class (:mod:`postwarden.milter.app`), which only
collects it; every decision is a pure function over the compiled view
(:mod:`postwarden.milter.verdict`).
"""
