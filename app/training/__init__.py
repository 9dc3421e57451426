"""The trainer service: a long-lived process that runs training jobs from a durable queue."""
