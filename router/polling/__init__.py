"""Pull as well as push: sources that poll an API, reconcile missed webhooks, or fire on a schedule.

spec      the rule-file blocks (poll:, reconcile:, schedule:) as pydantic models
presets   poll presets for known APIs (Stripe events, GitHub repository events, Shopify orders)
compile   compile a block: templates, JMESPath, timing; errors as file:line:col
timing    every / cron with a time zone; backoff after failures
fetch     one pass over the pages: render the request, follow next / Link, ETag, Retry-After
store     the database side: lease, state, the one transaction that stores events with the cursor
runner    one poll of one source, end to end (also `router poll --once` and the rule tests)
jobs      the worker's jobs: a tick each second that enqueues the polls that are due
history   what the UI, the API and /health read: the polls of a source, the failing ones
"""
