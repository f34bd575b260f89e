"""Routing, pure: tags, the inbound matrix, outbound rules, and the route commands."""

from __future__ import annotations

import pytest

from postwarden.routing import route_message, tag, untag
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import Snapshot, compile_settings
from tests.unit.conftest import Cli

SETTINGS = """\
version: 1
primary_domain: hosted.test
trusted_networks: [127.0.0.1/32]
domains:
  hosted.test:
    inbound_routing: [{name: r, route: archive, condition: all%s}]
    outbound_routing:
      - {name: dlp, route: dlp, condition: external, action: change-route}
      - {name: journal, route: archive, condition: external, action: send-additionally}
  plain.test: {}
routes:
  archive: {host: "[192.0.2.9]", port: 2525}
  dlp: {host: "[192.0.2.10]"}
"""


def snapshot(options: str = "") -> Snapshot:
    return compile_settings(load_text(SETTINGS % options, "t").settings)


def test_tags_round_trip() -> None:
    tagged = tag("<Bob@Hosted.test>", "Archive.EU")
    assert tagged == "Bob@hosted.test.archive-eu.pwroute.invalid"
    assert untag(tagged) == ("Bob@hosted.test", "archive-eu")
    assert untag("bob@hosted.test") is None
    assert untag("x.pwroute.invalid") is None


def _route(
    snap: Snapshot,
    recipients: list[str],
    *,
    client: str = "198.51.100.9",
    sender: str = "a@ext.example",
    known: bool = True,
) -> tuple[list, list]:
    routes = route_message(
        snap,
        client_ip=client,
        sasl_user="",
        sender=sender,
        recipients=[(r, ("NOTIFY=SUCCESS",)) for r in recipients],
        known=lambda _: known,
    )
    return (
        [(p.recipient, p.keep) for p in routes.recipients],
        [(c.route, c.original, c.params) for c in routes.copies],
    )


@pytest.mark.parametrize(
    ("options", "known", "kept", "params"),
    [
        ("", True, False, ("NOTIFY=SUCCESS", "ORCPT=rfc822;bob@hosted.test")),
        (
            ", unknown_recipients: true",
            False,
            False,
            ("NOTIFY=SUCCESS", "ORCPT=rfc822;bob@hosted.test"),
        ),
        (
            ", unknown_recipients: true, keep_local_copy: true",
            True,
            True,
            ("NOTIFY=NEVER", "ORCPT=rfc822;bob@hosted.test"),
        ),
        (
            ", unknown_recipients: true, keep_local_copy: true",
            False,
            False,
            ("NOTIFY=SUCCESS", "ORCPT=rfc822;bob@hosted.test"),
        ),
    ],
)
def test_inbound_matrix(options: str, known: bool, kept: bool, params: tuple[str, ...]) -> None:
    recipients, copies = _route(snapshot(options), ["bob@hosted.test"], known=known)
    assert recipients == [("bob@hosted.test", kept)]
    assert copies == [("archive", "bob@hosted.test", params)]


def test_outbound_rules_and_send_additionally() -> None:
    recipients, copies = _route(
        snapshot(),
        ["x@ext.example", "y@plain.test"],
        client="127.0.0.1",
        sender="alice@hosted.test",
    )
    assert recipients == [("x@ext.example", False), ("y@plain.test", True)]
    assert copies == [
        ("dlp", "x@ext.example", ("NOTIFY=SUCCESS", "ORCPT=rfc822;x@ext.example")),
        ("archive", "alice@hosted.test", ("NOTIFY=NEVER", "ORCPT=rfc822;alice@hosted.test")),
    ]


@pytest.mark.parametrize(
    "written",
    ["rita@hosted.test.", '"rita"@Hosted.Test', "RITA@hosted.test", "rita@HOSTED.TEST."],
)
def test_tags_are_built_from_the_canonical_address(written: str) -> None:
    """A trailing dot, quotes or case never make a tag Postfix would bounce as bad syntax."""
    tagged = tag(written, "archive")
    assert ".." not in tagged and '"' not in tagged
    assert tagged.lower() == "rita@hosted.test.archive.pwroute.invalid"
    assert untag(tagged) is not None


def test_mail_from_a_route_address_is_routed_like_any_other() -> None:
    """The client IP never decides that mail is a hand-back (webmail may share it)."""
    recipients, copies = _route(snapshot(), ["bob@hosted.test"], client="192.0.2.9")
    assert recipients == [("bob@hosted.test", False)]
    assert [c[0] for c in copies] == ["archive"]


def test_the_senders_orcpt_is_kept_on_a_moved_recipient() -> None:
    routes = route_message(
        snapshot(),
        client_ip="198.51.100.9",
        sasl_user="",
        sender="a@ext.example",
        recipients=[("bob@hosted.test", ("NOTIFY=FAILURE", "ORCPT=rfc822;Bob@Old.Example"))],
        known=lambda _: True,
    )
    assert routes.copies[0].params == ("NOTIFY=FAILURE", "ORCPT=rfc822;Bob@Old.Example")


def test_routing_says_why_it_does_not_apply() -> None:
    routes = route_message(
        snapshot(),
        client_ip="198.51.100.9",
        sasl_user="",
        sender="a@ext.example",
        recipients=[("y@plain.test", ()), ("z@ext.example", ())],
        known=lambda _: True,
    )
    reasons = [p.reason for p in routes.recipients]
    assert reasons[0] == "no inbound rule of plain.test takes external mail"
    assert "not routed" in reasons[1]


def test_route_commands(cli: Cli) -> None:
    cli.ok("init", "hosted.test")
    cli.ok(
        "route", "add", "archive", "--host", "[192.0.2.9]", "--port", "2525", "--tls", "required"
    )
    assert cli("route", "add", "archive", "--host", "x.example").status == 1
    similar = cli("route", "add", "ARCHIVE", "--host", "[192.0.2.1]")
    assert similar.status == 1 and "too similar to route 'archive'" in similar.err
    cli.ok(
        "routing",
        "inbound",
        "add",
        "keep",
        "--route",
        "archive",
        "--condition",
        "all",
        "--keep-local-copy",
    )
    refused = cli("route", "delete", "archive")
    assert refused.status == 1 and "hosted.test inbound rule 'keep'" in refused.err
    missing = cli(
        "routing",
        "outbound",
        "add",
        "x",
        "--route",
        "nowhere",
        "--condition",
        "external",
        "--action",
        "change-route",
    )
    assert missing.status == 1 and "route 'nowhere' does not exist" in missing.err
    cli.ok("route", "edit", "archive", "--port", "2526")
    listed = cli.ok("route", "list", "--json").json()
    assert listed[0]["nexthop"] == "[192.0.2.9]:2526" and listed[0]["tls"] == "required"
    cli.ok("routing", "inbound", "delete", "keep")
    cli.ok("route", "delete", "archive")
    assert cli.ok("route", "list", "--json").json() == []


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--host", "localhost"], "is this server"),
        (["--host", "mx.unit.test"], "is this server"),  # myhostname
        (["--host", "[127.0.0.1]"], "own mail service"),  # port 25 on loopback
        (["--host", "[127.0.0.2]", "--port", "587"], "own mail service"),
        (["--host", "[127.0.0.1]", "--port", "10587"], "own listeners"),  # master.cf
        (["--host", "hosted.test"], "its MX is this server"),
    ],
)
def test_a_route_to_this_server_is_refused(cli: Cli, argv: list[str], why: str) -> None:
    cli.ok("init", "hosted.test")
    result = cli("route", "add", "self", *argv)
    assert result.status == 1 and why in result.err, result.err
    assert cli.ok("route", "list", "--json").json() == []


def test_the_loop_guard_refuses_when_it_cannot_read_postfix(cli: Cli) -> None:
    """Without a readable Postfix configuration the guard cannot check: it refuses."""
    cli.ok("init", "hosted.test")
    (cli.postfix_config / "master.cf").unlink()
    result = cli("route", "add", "archive", "--host", "[192.0.2.9]")
    assert result.status == 1 and "--postfix-config-dir" in result.err, result.err
    for host in ("localhost", "[127.0.0.1]"):  # the checks that need no configuration
        assert "would loop" in cli("route", "add", "self", "--host", host).err
    assert cli.ok("route", "list", "--json").json() == []


def test_a_route_elsewhere_on_loopback_is_fine(cli: Cli) -> None:
    """An archiver on another loopback port is not this server's mail service."""
    cli.ok("init", "hosted.test")
    cli.ok("route", "add", "archive", "--host", "[127.0.0.1]", "--port", "10026")
    cli.ok("route", "add", "dlp", "--host", "hosted.test", "--no-mx", "--port", "2525")
