"""Notifications: the events an operator must see, sent as they are committed to a webhook
(POSTed JSON, spooled while it is away) or to syslog, from background threads that never hold
up a sweep or a transaction. See `notifier.Notifier`."""
