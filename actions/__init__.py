"""Policy, the durable action journal and executors. Imports correlator types."""

from actions.dispatcher import Dispatcher, build_executors, build_payload
from actions.errors import ActionError, JournalError
from actions.journal import Journal, JournalRow
from actions.policy import Policy, Rule, decide, load_policy, matches
from actions.types import ActionPlan, ActionResult, Executor, idempotency_key

__all__ = [
    "ActionError",
    "ActionPlan",
    "ActionResult",
    "Dispatcher",
    "Executor",
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
