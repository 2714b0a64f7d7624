"""Room PINs: server-side generation, rejection of trivial PINs, brute-force limits.

Policy (``PinPolicy``, defaults follow the design notes §6):

* PINs are digits only, ``min_length`` (6) to ``max_length`` (12) long;
* trivial PINs are refused: one repeated digit (``111111``), ascending or descending runs
  (``123456``, ``987654``, also wrapping ``890123``), and short repeated blocks (``121212``,
  ``123123``, ``12341234``);
* the moderator PIN differs from the participant PIN, and no PIN is used by two rooms (checked
  through the store, which also enforces it with a unique index);
* guessing: ``tries_per_call`` (3) PIN entries per call -- enforced by the IVR -- and at most
  ``max_failures`` (10) wrong PINs per caller source within ``failure_window`` (600 s); past that
  a caller is rejected before the PIN prompt. Failures are counted in the shared store (the
  ``rejections`` table), so every process and machine sees the same count.

Generation uses ``secrets`` (a CSPRNG), never ``random``.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_PIN_POLICY",
    "PinFailureCounter",
    "PinPolicy",
    "PinRegistry",
    "WeakPinError",
    "caller_source",
    "check_pin",
    "check_pin_pair",
    "failures_exhausted",
    "generate_pin",
    "generate_room_pins",
    "is_trivial",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PinPolicy:
    """Tuning of PIN length and brute-force limits."""

    min_length: int = 6
    max_length: int = 12
    generated_length: int = 8  # length of server-generated PINs (10^8 space, minus trivial ones)
    tries_per_call: int = 3
    max_failures: int = 10
    failure_window: float = 600.0  # seconds

    def __post_init__(self) -> None:
        if not 6 <= self.min_length <= self.generated_length <= self.max_length:
            raise ValueError("need 6 <= min_length <= generated_length <= max_length")


DEFAULT_PIN_POLICY = PinPolicy()


class WeakPinError(ValueError):
    """A user-supplied PIN was refused; ``reason`` is a stable code, str() a clear message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PinRegistry(Protocol):
    """What PIN generation needs from the store."""

    async def pin_in_use(self, pin: str) -> bool: ...


class PinFailureCounter(Protocol):
    """What the brute-force check needs from the store."""

    async def count_recent_pin_failures(self, source: str, since: float) -> int: ...


def is_trivial(pin: str) -> bool:
    """True for one repeated digit, an ascending/descending run (mod 10) or a repeated block."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if len(steps) == 1 and steps <= {0, 1, 9}:
        return True
    n = len(pin)
    return any(n % size == 0 and pin == pin[:size] * (n // size) for size in range(1, n // 2 + 1))


def check_pin(pin: str, policy: PinPolicy = DEFAULT_PIN_POLICY) -> str:
    """Return ``pin`` if it is acceptable as a room PIN, else raise ``WeakPinError``."""
    if not pin.isascii() or not pin.isdigit():
        raise WeakPinError("not_digits", "a PIN consists of the digits 0-9 only")
    if len(pin) < policy.min_length:
        raise WeakPinError(
            "too_short", f"a PIN needs at least {policy.min_length} digits, got {len(pin)}"
        )
    if len(pin) > policy.max_length:
        raise WeakPinError(
            "too_long", f"a PIN has at most {policy.max_length} digits, got {len(pin)}"
        )
    if len(set(pin)) == 1:
        raise WeakPinError("repeated_digit", f"{pin} repeats one digit; choose another PIN")
    if is_trivial(pin):
        raise WeakPinError(
            "trivial", f"{pin} is a sequence or a repeated pattern and easy to guess"
        )
    return pin


def check_pin_pair(
    participant_pin: str, moderator_pin: str, policy: PinPolicy = DEFAULT_PIN_POLICY
) -> None:
    """Check both PINs of a room, and that they differ."""
    check_pin(participant_pin, policy)
    check_pin(moderator_pin, policy)
    if participant_pin == moderator_pin:
        raise WeakPinError(
            "same_as_participant", "the moderator PIN must differ from the participant PIN"
        )


def generate_pin(length: int) -> str:
    """A random, non-trivial PIN of ``length`` digits from ``secrets``."""
    if length < 6:
        raise ValueError("PINs have at least 6 digits")
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        if not is_trivial(pin):
            return pin


async def generate_room_pins(
    registry: PinRegistry, policy: PinPolicy = DEFAULT_PIN_POLICY, attempts: int = 20
) -> tuple[str, str]:
    """Generate ``(participant_pin, moderator_pin)``: different, non-trivial, unused.

    A PIN is unique across rooms *and* roles (a participant PIN of one room never equals the
    moderator PIN of another), because one prompt finds the room and the role from the PIN.
    The store's unique index settles a race between two generators; the caller retries then.
    """
    chosen: list[str] = []
    for _ in range(attempts):
        pin = generate_pin(policy.generated_length)
        if pin in chosen or await registry.pin_in_use(pin):
            continue
        chosen.append(pin)
        if len(chosen) == 2:
            return chosen[0], chosen[1]
    raise RuntimeError("could not find unused PINs; raise PinPolicy.generated_length")


def caller_source(caller: str | None, address: str, trusted_trunk: bool) -> str:
    """The key PIN failures are counted under.

    Behind a trusted trunk every caller shares the trunk's address, so the asserted caller
    number (``tel:+49...``) identifies the source; anonymous callers through the trunk share
    ``anon@<address>``. A direct SIP caller may forge From at will, so only the network address
    (``ip:<host>``, the port dropped) counts.
    """
    host = _host_of(address)
    if trusted_trunk:
        if caller:
            return f"tel:{caller}"
        return f"anon@{host}"
    return f"ip:{host}"


def _host_of(address: str) -> str:
    if address.startswith("["):  # "[v6]:port"
        return address[1 : address.find("]")]
    if address.count(":") == 1:  # "v4:port"
        return address.split(":", 1)[0]
    return address


async def failures_exhausted(
    counter: PinFailureCounter, source: str, now: float, policy: PinPolicy = DEFAULT_PIN_POLICY
) -> bool:
    """True when ``source`` reached ``max_failures`` wrong PINs within the window ending at
    ``now`` (UTC epoch seconds): reject the call before the PIN prompt."""
    since = now - policy.failure_window
    return await counter.count_recent_pin_failures(source, since) >= policy.max_failures
