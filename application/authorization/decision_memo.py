"""Remembered verdicts for calls whose verdict cannot depend on the request's details.

When no statement of the key policy or of the caller's identity policies has a Condition, and no grant
takes part, ``domain.policy.evaluation.evaluate`` reads nothing of the request but who the caller is, the action
and the key: every later call with those gives the same verdict for as long as the same policy objects are
in force. Most calls are like that (the default key policy, plain identity policies), and evaluating the
policies was about a tenth of a call's CPU (docs/performance.md).

Entries are keyed by the policies' identities and hold the policies themselves: a policy put, attached or
detached yields new objects (parsed from the new text), so a changed policy can never hit an old verdict,
and holding the objects keeps their ids from being reused while the entry lives.
"""
from __future__ import annotations

from typing import Sequence

from domain.policy.document import PolicyDocument
from domain.policy.evaluation import Decision

_MAX_ENTRIES = 4096


class DecisionMemo:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self._entries: dict[tuple, tuple[PolicyDocument, tuple[PolicyDocument, ...], Decision]] = {}
        self._max = max_entries

    @staticmethod
    def applies(key_policy: PolicyDocument, identity_policies: Sequence[PolicyDocument]) -> bool:
        """Whether a verdict under these policies (with no grants) may be remembered."""
        return key_policy.unconditional and all(policy.unconditional for policy in identity_policies)

    @staticmethod
    def _key(who: tuple[str, str, str, str, str], key_policy: PolicyDocument,
             identity_policies: Sequence[PolicyDocument]) -> tuple:
        return (*who, id(key_policy), *map(id, identity_policies))

    def get(self, who: tuple[str, str, str, str, str], key_policy: PolicyDocument,
            identity_policies: Sequence[PolicyDocument]) -> Decision | None:
        """``who``: (principal ARN, principal account, action, key ARN, key account)."""
        entry = self._entries.get(self._key(who, key_policy, identity_policies))
        if entry is None or entry[0] is not key_policy or len(entry[1]) != len(identity_policies) or any(
                held is not policy for held, policy in zip(entry[1], identity_policies)):
            return None
        return entry[2]

    def put(self, who: tuple[str, str, str, str, str], key_policy: PolicyDocument,
            identity_policies: Sequence[PolicyDocument], decision: Decision) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()  # policies come and go; a full memo is mostly stale
        self._entries[self._key(who, key_policy, identity_policies)] = (key_policy, tuple(identity_policies), decision)
