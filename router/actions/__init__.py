"""The action registry: one module per action, keyed by its name."""

from __future__ import annotations

from router.actions.base import Action, ActionConfig, ActionContext, StepResult
from router.actions.email import EmailAction
from router.actions.emit import EmitAction
from router.actions.http import HttpAction
from router.actions.slack import SlackAction

ACTIONS: dict[str, Action] = {a.name: a for a in (HttpAction(), SlackAction(), EmailAction(), EmitAction())}

__all__ = ["ACTIONS", "Action", "ActionConfig", "ActionContext", "StepResult"]
