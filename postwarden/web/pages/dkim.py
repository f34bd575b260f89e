"""A domain's DKIM keys: create one, the host name and TXT strings to publish (with copy
buttons), and "Begin authentication" with the outcome in words."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response
from starlette.routing import Route

from postwarden.admin import dkim
from postwarden.errors import PostwardenError
from postwarden.milter import dkim_probe
from postwarden.web.pages._common import domain_page, refusal
from postwarden.web.render import Ctx, handler

PROPAGATION = (
    "DNS changes can take up to 72 hours to reach everyone: publish the record if you have"
    " not, and begin authentication again later."
)
KEY_CHOICES = {
    "rsa-2048": ("rsa", "2048"),
    "rsa-1024": ("rsa", "1024"),
    "ed25519": ("ed25519", None),
}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    headline: str
    detail: str
    hint: str = ""


def _page(
    ctx: Ctx, *, outcome: Outcome | None = None, error: str = "", status: int = 200
) -> Response:
    domain, _block, keys = dkim.show(ctx.admin(), ctx.request.path_params["domain"])
    how = dkim.signing_of(ctx.admin(), domain)  # as `dkim show` and `status` say it
    state = f"Outgoing mail of {domain}: {how.describe()}."
    return domain_page(
        ctx,
        "dkim",
        "dkim.html",
        status=status,
        error=error,
        heading="DKIM",
        keys=keys,
        state=state,
        outcome=outcome,
        values={"selector": ctx.field("selector")},
    )


def _create(ctx: Ctx) -> Response:
    domain = ctx.request.path_params["domain"]
    algorithm, bits = KEY_CHOICES.get(ctx.field("algorithm"), ("rsa", "2048"))
    selector = ctx.field("selector").strip() or None
    command = f"dkim create --algorithm {algorithm}" + (f" --bits {bits}" if bits else "")
    command += f" --selector {selector}" if selector else ""
    try:
        new = dkim.create(
            ctx.admin(f"{command} --domain {domain}"),
            domain,
            selector=selector,
            bits=bits,
            algorithm=algorithm,
        )
    except PostwardenError as exc:
        return _page(ctx, error=refusal(exc), status=400)
    ctx.say(
        "ok",
        f"Created {new.kind} key for {new.row.domain}, selector {new.row.selector} (pending)."
        " Publish its TXT record, then begin authentication.",
    )
    return ctx.redirect(f"/d/{domain}/dkim")


def _verify(ctx: Ctx) -> Response:
    domain, selector = ctx.request.path_params["domain"], ctx.field("selector") or None
    config = ctx.config
    try:
        done = dkim.verify(
            ctx.admin(f"dkim verify --selector {selector} --domain {domain}"),
            domain,
            selector=selector,
            nameserver=config.dkim_nameserver,
            timeout=config.dkim_timeout,
            # Authenticated means a real signature verifies, as on the command line.
            prove=dkim_probe.prover(nameserver=config.dkim_nameserver, timeout=config.dkim_timeout),
        )
    except PostwardenError as exc:
        return _page(ctx, error=refusal(exc), status=400)
    result = done.result
    if done.ok:
        headline = f"Authenticated: {done.domain} now signs with selector {done.row.selector}."
        if done.retired:
            headline += f" Selector {done.retired.selector} is retired."
        outcome = Outcome(True, headline, f"{done.detail}.")
    elif result.ok:  # the record matches, yet a signature made with the key does not verify
        outcome = Outcome(
            False,
            "Not authenticated: a signature made with the key does not verify.",
            f"{done.detail}.",
        )
    else:
        outcome = Outcome(
            False,
            f"Not authenticated: {result.outcome.description}.",
            f"{result.detail}.",
            PROPAGATION,
        )
    return _page(ctx, outcome=outcome)


ROUTES = [
    Route("/d/{domain}/dkim", handler(_page)),
    Route("/d/{domain}/dkim/create", handler(_create), methods=["POST"]),
    Route("/d/{domain}/dkim/verify", handler(_verify), methods=["POST"]),
]
