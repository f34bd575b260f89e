"""postwarden-milter: DKIM signing, regex spam tagging, header rewrites, gateway original IP.

The pymilter class (:mod:`postwarden.milter.app`) only collects what Postfix sends; every
decision is a pure function over the compiled view (:mod:`postwarden.milter.verdict`).
"""
