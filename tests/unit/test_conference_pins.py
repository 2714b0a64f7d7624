"""PIN policy: generation properties, trivial-PIN rejection, the brute-force check."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.conference import pins
from bridge.conference.pins import (
    DEFAULT_PIN_POLICY,
    PinPolicy,
    WeakPinError,
    caller_source,
    check_pin,
    check_pin_pair,
    failures_exhausted,
    generate_pin,
    generate_room_pins,
    is_trivial,
)


def oracle_trivial(pin: str) -> bool:
    """Independent statement of "trivial": listed explicitly, not computed by steps."""
    n = len(pin)
    digits = "0123456789" * 4
    runs = {digits[i : i + n] for i in range(10)} | {digits[::-1][i : i + n] for i in range(10)}
    blocks = {
        "".join(block) * (n // size)
        for size in range(1, n // 2 + 1)
        if n % size == 0
        for block in itertools.product("0123456789", repeat=size)
    } if n <= 8 else set()
    return pin in runs or pin in blocks


@pytest.mark.parametrize(
    "pin",
    ["000000", "999999", "123456", "234567", "890123", "654321", "210987", "121212",
     "123123", "12341234", "1234567890", "0987654321", "4545454545", "33333333"],
)
def test_trivial_pins_are_rejected(pin: str) -> None:
    assert is_trivial(pin)
    with pytest.raises(WeakPinError) as info:
        check_pin(pin)
    assert info.value.reason in {"repeated_digit", "trivial"}
    assert pin in str(info.value)


@pytest.mark.parametrize(
    ("pin", "reason", "message"),
    [
        ("12345", "too_short", "at least 6 digits, got 5"),
        ("4829", "too_short", "at least 6 digits, got 4"),
        ("", "not_digits", "digits 0-9 only"),
        ("48291a", "not_digits", "digits 0-9 only"),
        ("482 913", "not_digits", "digits 0-9 only"),
        ("\u0664\u0668\u0662\u0669\u0661\u0663", "not_digits", "digits 0-9 only"),
        ("4829134829134", "too_long", "at most 12 digits, got 13"),
        ("111111", "repeated_digit", "repeats one digit"),
        ("123456", "trivial", "easy to guess"),
    ],
)
def test_bad_pins_have_clear_messages(pin: str, reason: str, message: str) -> None:
    with pytest.raises(WeakPinError, match=message) as info:
        check_pin(pin)
    assert info.value.reason == reason


@pytest.mark.parametrize("pin", ["482913", "730516", "1234568", "123457", "112233", "90817263"])
def test_reasonable_pins_pass(pin: str) -> None:
    assert check_pin(pin) == pin


def test_moderator_pin_must_differ() -> None:
    with pytest.raises(WeakPinError, match="must differ") as info:
        check_pin_pair("482913", "482913")
    assert info.value.reason == "same_as_participant"
    check_pin_pair("482913", "730516")


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="min_length"):
        PinPolicy(min_length=4)
    assert DEFAULT_PIN_POLICY.tries_per_call == 3
    assert DEFAULT_PIN_POLICY.max_failures == 10
    assert DEFAULT_PIN_POLICY.failure_window == 600.0


@given(st.text(alphabet="0123456789", min_size=6, max_size=8))
def test_is_trivial_agrees_with_the_oracle(pin: str) -> None:
    assert is_trivial(pin) == oracle_trivial(pin)


@settings(max_examples=200)
@given(st.integers(min_value=6, max_value=12))
def test_generated_pins_are_valid(length: int) -> None:
    pin = generate_pin(length)
    assert len(pin) == length >= 6
    assert pin.isascii() and pin.isdigit()
    assert not is_trivial(pin)
    assert check_pin(pin) == pin


def test_generator_retries_trivial_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter("111111" + "123456" + "482913")
    monkeypatch.setattr("bridge.conference.pins.secrets.choice", lambda seq: next(draws))
    assert generate_pin(6) == "482913"


def test_generator_refuses_short_lengths() -> None:
    with pytest.raises(ValueError, match="6 digits"):
        generate_pin(5)


class FakeRegistry:
    def __init__(self, used: set[str]) -> None:
        self.used = used
        self.asked: list[str] = []

    async def pin_in_use(self, pin: str) -> bool:
        self.asked.append(pin)
        return pin in self.used


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=6, max_value=10))
async def test_room_pins_are_distinct_unused_and_long(length: int) -> None:
    registry = FakeRegistry(set())
    policy = PinPolicy(generated_length=length, max_length=12)
    participant, moderator = await generate_room_pins(registry, policy)
    assert participant != moderator
    assert len(participant) == len(moderator) == length
    assert not is_trivial(participant) and not is_trivial(moderator)
    assert registry.asked == [participant, moderator]


async def test_room_pins_skip_pins_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    sequence = iter(["482913", "482913", "730516", "905182"])
    monkeypatch.setattr(pins, "generate_pin", lambda length: next(sequence))
    registry = FakeRegistry({"482913"})
    assert await generate_room_pins(registry, PinPolicy(generated_length=6)) == (
        "730516",
        "905182",
    )


async def test_room_pins_give_up_when_space_is_exhausted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pins, "generate_pin", lambda length: "482913")
    with pytest.raises(RuntimeError, match="generated_length"):
        await generate_room_pins(FakeRegistry({"482913"}), attempts=5)


@pytest.mark.parametrize(
    ("caller", "address", "trusted", "expected"),
    [
        ("+49301234567", "10.0.0.5:5060", True, "tel:+49301234567"),
        (None, "10.0.0.5:5060", True, "anon@10.0.0.5"),
        ("+49301234567", "203.0.113.9:5060", False, "ip:203.0.113.9"),
        ("", "[2001:db8::1]:5060", False, "ip:2001:db8::1"),
        (None, "2001:db8::1", False, "ip:2001:db8::1"),
    ],
)
def test_caller_source(caller: str | None, address: str, trusted: bool, expected: str) -> None:
    assert caller_source(caller, address, trusted) == expected


class FakeCounter:
    def __init__(self, times: list[float]) -> None:
        self.times = times

    async def count_recent_pin_failures(self, source: str, since: float) -> int:
        return sum(1 for t in self.times if t >= since)


@pytest.mark.parametrize(
    ("failures", "blocked"),
    [
        ([1000.0 + i for i in range(9)], False),
        ([1000.0 + i for i in range(10)], True),
        ([390.0] + [1000.0 + i for i in range(9)], False),  # the oldest fell out of the window
        ([400.0] + [1000.0 + i for i in range(9)], True),  # exactly 600 s old still counts
    ],
)
async def test_failures_exhausted(failures: list[float], blocked: bool) -> None:
    assert await failures_exhausted(FakeCounter(failures), "ip:1.2.3.4", 1000.0) is blocked
