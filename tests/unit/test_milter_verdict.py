"""The milter's per-message plan: table cases, and no input makes it raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwarden.dkim import keys
from postwarden.milter.verdict import MessageFacts, plan_message
from postwarden.milter.view import MilterView, SigningKey, compile_view
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import compile_settings

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    allowed_ips: [198.51.100.7]
    blocked_ips: [203.0.113.0/24]
    spam_rules:
      - {name: pills, field: subject, pattern: '(?i)pills'}
      - {name: body, field: body, pattern: 'win'}
      - {name: verdict, field: 'header:X-Gateway-Spam', pattern: '^yes'}
    gateway: {enabled: true, ips: [192.0.2.25]}
  other.test:
"""
KEY = keys.generate(keys.Algorithm.ED25519)


def _view() -> MilterView:
    snapshot = compile_settings(load_text(SETTINGS, "t").settings)
    return compile_view(
        snapshot, lambda: {"hosted.test": SigningKey("hosted.test", "s", "ed25519", KEY)}
    )


VIEW = _view()


def test_trusted_mail_from_a_hosted_domain_is_signed_by_the_primary_key() -> None:
    plan = plan_message(
        VIEW,
        MessageFacts(
            client_ip="127.0.0.1",
            headers=[("From", b"a@other.test"), ("Subject", b"x")],
            body=b"hi\r\n",
            recipients=["<x@ext.example>"],
        ),
    )
    assert plan.signature is not None and "d=hosted.test" in plan.signature


def test_two_from_addresses_are_not_signed() -> None:
    plan = plan_message(
        VIEW,
        MessageFacts(
            client_ip="127.0.0.1",
            headers=[("From", b"a@hosted.test, b@hosted.test")],
            recipients=["<x@ext.example>"],
        ),
    )
    assert plan.signature is None and "exactly one From" in plan.notes[0]


def test_mixed_verdicts_the_stricter_wins() -> None:
    """Allowed for hosted.test, rules of other.test: none; tagged only by hosted.test."""
    plan = plan_message(
        VIEW,
        MessageFacts(
            client_ip="198.51.100.9",
            headers=[("Subject", b"pills")],
            recipients=["<bob@hosted.test>", "<carol@other.test>"],
        ),
    )
    assert ("X-Postwarden-Spam", "pills") in plan.add_headers
    trusted = plan_message(
        VIEW,
        MessageFacts(
            client_ip="198.51.100.7",
            headers=[("Subject", b"pills")],
            recipients=["<bob@hosted.test>", "<carol@other.test>"],
        ),
    )
    assert not [h for h in trusted.add_headers if h[0] == "X-Postwarden-Trusted"]
    assert not [h for h in trusted.add_headers if h[0] == "X-Spam-Flag"]


_header_name = st.sampled_from(
    [
        "From",
        "To",
        "Subject",
        "Received",
        "X-Gateway-Spam",
        "X-Postwarden-Spam",
        "x-spam-flag",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
)
_header_value = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"=?utf-8?b?!!!?=",
            b"=?x-unknown?q?abc?=",
            b"multipart/mixed; boundary=",
            b"from [::ffff:999.1.1.1] by x",
            b"from (([[[",
            b"base64",
            b"\xff\xfe\x00",
            b"text/plain; charset=no-such",
            b"=?utf-8?b?Q?=",  # email.errors.HeaderParseError in the email package
            b"=?utf-8?q?M=C3=BCller=2C_Hans?= <alice@hosted.test>",
            b"=?utf-8?b?Q?= <alice@hosted.test>",
            b'"=?utf-8?q?x?=" <alice@hosted.test>, =?utf-8?b??=',
            b"from =?us-ascii?q?[198.51.100.7]_by_x?= (unknown [203.0.113.9])\n\tby gw (Postfix)",
            b"=?iso-2022-jp?b?GyRCJDMkcyRLJEEkTxsoQg?=",
            b"=?utf-8?q?=FF=FE?=",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    client=st.sampled_from(
        ["127.0.0.1", "192.0.2.25", "198.51.100.9", "198.51.100.7", "not-an-ip", "2001:db8::1"]
    ),
    headers=st.lists(st.tuples(_header_name, _header_value), max_size=12),
    body=st.binary(max_size=3000),
    recipients=st.lists(
        st.sampled_from(
            [
                "<bob@hosted.test>",
                "<c@other.test>",
                "<x@ext>",
                "",
                "<@>",
                "<\xff@hosted.test>",
                "<@relay.example:bob@hosted.test>",
                "<bob@hosted.test.>",
                '<"b o b"@Hosted.Test>',
                "<@:>",
            ]
        ),
        max_size=4,
    ),
    sasl_user=st.sampled_from(["", "alice"]),
)
def test_no_input_makes_the_plan_raise(
    client: str,
    headers: list[tuple[str, bytes]],
    body: bytes,
    recipients: list[str],
    sasl_user: str,
) -> None:
    """Content never causes a temporary failure: whatever a sender writes, a plan comes out."""
    facts = MessageFacts(client_ip=client, headers=headers, body=body, sasl_user=sasl_user)
    for recipient in recipients:
        facts.add_recipient(recipient, ())
    plan_message(VIEW, facts)


def test_switched_off_rules_and_filters_do_not_tag() -> None:
    """The "Use" switch: a rule off does not tag; a domain's filter off runs no rule and
    leaves an incoming X-Spam-Flag alone (postwarden does not own that verdict then)."""

    def facts() -> MessageFacts:
        made = MessageFacts(
            client_ip="198.51.100.9",
            headers=[("Subject", b"pills"), ("X-Spam-Flag", b"NO")],
            body=b"win\r\n",
        )
        made.add_recipient("<bob@hosted.test>", ())
        return made

    rule_off = SETTINGS.replace("pattern: '(?i)pills'}", "pattern: '(?i)pills', enabled: false}")
    view = compile_view(compile_settings(load_text(rule_off, "t").settings))
    plan = plan_message(view, facts())
    assert ("X-Postwarden-Spam", "body") in plan.add_headers
    assert ("X-Spam-Flag", 1) in plan.remove_headers
    filter_off = SETTINGS.replace(
        "    spam_rules:\n", "    spam_rules_enabled: false\n    spam_rules:\n"
    )
    view = compile_view(compile_settings(load_text(filter_off, "t").settings))
    plan = plan_message(view, facts())
    assert plan.spam_rules == [] and not plan.add_headers
    assert plan.remove_headers == []
