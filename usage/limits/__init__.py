"""Limits, quotas and budgets: the rules (`rules`), what a call reserves (`estimate`), the stores that
count (`redis_store`, `memory_store`), and the reserve/reconcile flow the serving half calls through
`usage.services` (`enforce`)."""
