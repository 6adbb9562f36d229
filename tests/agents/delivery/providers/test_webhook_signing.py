"""Standard Webhooks signing, checked against the spec repository's own test vector."""

from __future__ import annotations

import pytest

from agents.delivery.providers.webhook import sign, verify

# From standard-webhooks/standard-webhooks, libraries/python/tests (test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_the_spec_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD.encode()) == SPEC_SIGNATURE


def check(
    signature: str = SPEC_SIGNATURE,
    *,
    body: str = SPEC_PAYLOAD,
    msg_id: str = SPEC_MSG_ID,
    timestamp: str | int = SPEC_TIMESTAMP,
    now: float = SPEC_TIMESTAMP,
    secret: str = SPEC_SECRET,
) -> bool:
    return verify(secret, msg_id, timestamp, body, signature, now=now)


def test_verify_accepts_the_spec_test_vector() -> None:
    assert check()
    assert check(timestamp=str(SPEC_TIMESTAMP))


@pytest.mark.parametrize(
    "tampered",
    [
        {"body": '{"test": 2432232315}'},
        {"msg_id": "msg_other"},
        {"timestamp": SPEC_TIMESTAMP + 1, "now": SPEC_TIMESTAMP + 1},
        {"secret": "whsec_" + "A" * 32},
    ],
)
def test_any_change_breaks_the_signature(tampered: dict[str, object]) -> None:
    assert not check(**tampered)  # type: ignore[arg-type]


def test_one_matching_signature_among_several_is_enough() -> None:
    header = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1,not-base64!",
            "garbage",
            SPEC_SIGNATURE,
        ]
    )
    assert check(header)


def test_signature_of_another_version_is_ignored() -> None:
    assert not check(SPEC_SIGNATURE.replace("v1,", "v1a,"))


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamps_outside_the_tolerance_are_refused(offset: int) -> None:
    assert not check(now=SPEC_TIMESTAMP + offset)
    assert check(now=SPEC_TIMESTAMP + offset // 2)


def test_tolerance_can_be_disabled_for_recorded_vectors() -> None:
    assert verify(
        SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD, SPEC_SIGNATURE, tolerance=None
    )


def test_malformed_timestamp_fails_verification() -> None:
    assert not check(timestamp="yesterday")


def test_empty_header_fails_verification() -> None:
    assert not check("")
