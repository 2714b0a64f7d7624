"""The policy of the conference service: what the bridge does about each domain event.

Pure: no I/O, no clock, no asyncio (the runtime's controller executes the effects).
"""

from __future__ import annotations

from typing import Final

from bridge.media.prompts import COUNT_PROMPTS, HELP_PROMPTS

__all__ = ["PROMPT_IDS"]

#: Every prompt the conference's effects can play (``bridge serve`` refuses to start without).
PROMPT_IDS: Final = frozenset(
    {"invalid_choice", "you_are_muted", "you_are_unmuted", "all_muted", "all_unmuted",
     "conference_now_locked", "conference_now_unlocked", "not_allowed", "participant_removed",
     "you_were_removed", "conference_ended"}
) | COUNT_PROMPTS | HELP_PROMPTS
