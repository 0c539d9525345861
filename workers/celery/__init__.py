"""The Celery side: the job as a chord of chunk tasks, sent through a broker to `celery worker`s."""
