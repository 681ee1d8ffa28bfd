"""Event Router: receive webhooks, store them durably, match rules, deliver to Slack, email and APIs."""

__version__ = "0.1.0"
