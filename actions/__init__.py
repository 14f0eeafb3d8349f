"""Policy, guardrails, the durable action journal and executors. Imports correlator types."""

from actions.dispatcher import Dispatcher, build_executors, build_payload
from actions.errors import ActionError, ActionNotFound, ActionStateConflict, JournalError
from actions.guardrail_config import GuardrailPolicy
from actions.guardrails import Decision, Guardrails, GuardVerdict
from actions.journal import Journal, JournalRow
from actions.policy import Policy, Rule, decide, load_policy, matches
from actions.types import ActionPlan, ActionResult, Executor, idempotency_key

__all__ = [
    "ActionError",
    "ActionNotFound",
    "ActionPlan",
    "ActionResult",
    "ActionStateConflict",
    "Decision",
    "Dispatcher",
    "Executor",
    "GuardVerdict",
    "GuardrailPolicy",
    "Guardrails",
    "Journal",
    "JournalError",
    "JournalRow",
    "Policy",
    "Rule",
    "build_executors",
    "build_payload",
    "decide",
    "idempotency_key",
    "load_policy",
    "matches",
]
