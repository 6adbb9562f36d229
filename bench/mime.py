"""``clarion bench mime``: µs per email message, the ``email`` package's way and Clarion's.

No broker, no SMTP: both builders turn the same Deliveries into the bytes that go to the
relay. The old way is the former ``SmtpProvider.build_message`` (an ``EmailMessage``) plus
the flattening aiosmtplib's ``send_message`` did (``flatten_message``, 8-bit, as with a
relay offering 8BITMIME); the new way is ``SmtpProvider.build_message``. Rounds alternate
between the two so that a machine loaded by other work slows both alike; the median round
is reported. ``python -m bench.mime --builder new`` runs one builder alone, for py-spy.
"""

from __future__ import annotations

import argparse
import email.utils
import re
import statistics
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any

from aiosmtplib.email import flatten_message

from agents.delivery.providers.config import SmtpConfig
from agents.delivery.providers.smtp import NOTIFICATION_ID_HEADER, SmtpProvider, message_id

Builder = Callable[[Mapping[str, Any]], bytes]
_LINE_BREAKS = re.compile(r"[\r\n]+")

WELCOME_HTML = (
    "<p>Hi Alice,</p>\n<p>Thanks for signing up for Clarion. Your account is ready to use.</p>\n"
    '<p><a href="https://app.example.com/setup?token=0123456789abcdef">Finish setting up your'
    " account</a></p>\n<p>If you did not create this account, you can ignore this email.</p>\n"
    "<p>— The Clarion team</p>\n"
)
SHAPES: list[dict[str, Any]] = [
    {
        "subject": "Welcome to Clarion, Alice!",
        "body": "Hi Alice,\n\nThanks for signing up for Clarion. Your account is ready to use.\n\n"
        "If you did not create this account, you can ignore this email.\n\n— The Clarion team",
        "html": WELCOME_HTML,
    },
    {
        "subject": "Bienvenue sur Clarion, Élodie !",
        "body": "Bonjour Élodie,\n\nMerci de votre inscription à Clarion. Votre compte est prêt."
        "\n\nSi vous n'avez pas créé ce compte, vous pouvez ignorer cet e-mail.\n\n"
        "— L'équipe Clarion",
        "html": None,
    },
    {
        "subject": "You have 50 new notifications",
        "body": "Here is what happened since your last update:\n\nSocial (50):\n"
        + "".join(f"- Bob liked photo {n}: See who else did.\n" for n in range(50)),
        "html": None,
    },
    {
        "subject": "新しいログインがありました 🔐 — please check your account",
        "body": "新しいデバイスからあなたのアカウントにログインがありました。" * 5,
        "html": "<p>新しいデバイスからログインがありました。</p>\n" * 5,
    },
]


def workload(messages: int) -> list[dict[str, Any]]:
    return [
        {
            **SHAPES[n % len(SHAPES)],
            "notification_id": f"ntf_{n:032x}",
            "address": f"user-{n}@example.com",
        }
        for n in range(messages)
    ]


def email_package_builder(config: SmtpConfig) -> Builder:
    """The builder Clarion used before mime.py, and the flattening send_message did."""

    def build(delivery: Mapping[str, Any]) -> bytes:
        notification_id = str(delivery["notification_id"])
        message = EmailMessage()
        message["From"] = config.sender
        message["To"] = str(delivery["address"])
        message["Subject"] = _LINE_BREAKS.sub(" ", str(delivery.get("subject") or ""))
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = message_id(notification_id, config.message_id_domain)
        message[NOTIFICATION_ID_HEADER] = notification_id
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(str(delivery["body"]))
        if delivery.get("html"):
            message.add_alternative(str(delivery["html"]), subtype="html")
        return flatten_message(message, utf8=False, cte_type="8bit")

    return build


def clarion_builder(config: SmtpConfig) -> Builder:
    provider = SmtpProvider(config)
    return lambda delivery: provider.build_message(delivery).data


def builders() -> dict[str, Builder]:
    config = SmtpConfig()
    return {"email package": email_package_builder(config), "clarion": clarion_builder(config)}


def time_round(build: Builder, deliveries: list[dict[str, Any]]) -> float:
    """Seconds per message over one pass through ``deliveries``."""
    started = time.perf_counter()
    for delivery in deliveries:
        build(delivery)
    return (time.perf_counter() - started) / len(deliveries)


def run_mime_bench(*, messages: int, rounds: int) -> dict[str, float]:
    """Median µs per message of each builder, printed with the ratio."""
    deliveries = workload(messages)
    chosen = builders()
    per_round: dict[str, list[float]] = {name: [] for name in chosen}
    for build in chosen.values():
        time_round(build, deliveries[: len(SHAPES)])  # warm imports and caches
    for _ in range(rounds):
        for name, build in chosen.items():
            per_round[name].append(time_round(build, deliveries))
    medians = {name: statistics.median(times) * 1e6 for name, times in per_round.items()}
    old, new = medians["email package"], medians["clarion"]
    print(f"{messages:,} messages ({len(SHAPES)} shapes) x {rounds} rounds, median round:")
    for name, micros in medians.items():
        print(f"  {name:<14} {micros:8.1f} µs/message")
    print(f"  ratio          {old / new:8.1f}x faster ({new / old:.1%} of the old time)")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mime", description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--builder",
        choices=["both", "old", "new"],
        default="both",
        help="old or new alone loops that builder for --rounds passes (to profile it)",
    )
    args = parser.parse_args()
    if args.builder == "both":
        run_mime_bench(messages=args.messages, rounds=args.rounds)
        return
    build = builders()["email package" if args.builder == "old" else "clarion"]
    deliveries = workload(args.messages)
    seconds = [time_round(build, deliveries) for _ in range(args.rounds)]
    print(f"{args.builder}: {statistics.median(seconds) * 1e6:.1f} µs/message")


if __name__ == "__main__":
    main()
