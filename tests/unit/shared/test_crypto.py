from __future__ import annotations

import uuid

import pytest
from cryptography.exceptions import InvalidTag

from shared import crypto

KEY = b"test-code-key"
DATA_KEY = b"0" * 32


def test_confirmation_code_is_six_digits_and_stable_for_a_leg() -> None:
    leg = uuid.uuid4()
    code = crypto.confirmation_code(KEY, leg)
    assert len(code) == 6 and code.isdigit()
    assert crypto.confirmation_code(KEY, leg) == code
    assert (
        crypto.confirmation_code(b"another key", leg) != code
        or crypto.confirmation_code(b"a third key", leg) != code
    )


def test_codes_spread_over_the_whole_range() -> None:
    codes = {crypto.confirmation_code(KEY, uuid.uuid4()) for _ in range(2000)}
    assert len(codes) > 1990
    assert min(codes) < "100000" and max(codes) > "900000"


def test_the_same_code_hashes_differently_on_two_legs() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert crypto.code_hash(KEY, a, "123456") != crypto.code_hash(KEY, b, "123456")
    assert crypto.hashes_match(crypto.code_hash(KEY, a, "123456"), crypto.code_hash(KEY, a, " 123456 "))
    assert not crypto.hashes_match(crypto.code_hash(KEY, a, "123456"), crypto.code_hash(KEY, a, "123457"))


def test_sealed_personal_data_opens_with_the_key_and_refuses_tampering() -> None:
    sealed = crypto.seal(DATA_KEY, {"phone": "+8613800001234"})
    assert "13800001234" not in sealed
    assert crypto.unseal(DATA_KEY, sealed) == {"phone": "+8613800001234"}
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises((InvalidTag, ValueError)):
        crypto.unseal(DATA_KEY, tampered)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("+8613812341234", "+86*******1234"), ("13812341234", "*******1234"), ("123", "***"), (None, None)],
)
def test_phone_numbers_are_masked_to_their_last_four_digits(phone: str | None, masked: str | None) -> None:
    assert crypto.mask_phone(phone) == masked


def test_names_and_emails_keep_only_a_first_letter() -> None:
    assert crypto.mask_name("王小明") == "王**"
    assert crypto.mask_email("alice@example.org") == "a****@example.org"
