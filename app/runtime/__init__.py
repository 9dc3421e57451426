"""Process and runtime code: the embedded stack, its supervisor, migrations, the Celery app."""
