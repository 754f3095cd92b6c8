"""Limits, quotas and budgets: the model (`models`), the rules as plain data (`rules`), what a call
reserves (`estimate`), the counters in Redis or in process (`stores`), the reserve/settle flow the
serving half reaches through `usage.services` (`enforce`), configuration and the consumer's view for
the management API (`services`), and the admin (`admin`)."""
