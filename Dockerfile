# One image for every service of compose.yaml: the Celery workers, Flower and the `conquer` CLI run the
# same code, so they can never disagree about a task's name or its message format.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from the project's own metadata, so that editing the code reuses this
# (slow) layer and only a change to pyproject.toml reinstalls them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md ./
COPY tasks ./tasks
COPY workers ./workers
COPY conquer ./conquer
RUN pip install --no-deps . \
 && python -c "import tasks, workers, conquer.cli"

# Celery refuses nothing to root with the JSON serializer, but a worker that runs what a broker tells it
# to should own nothing: an unprivileged user (uid and gid 10001: compose.yaml gives Redis this group, to
# read its password), and homes for Flower's state and compose's secrets that the named volumes mounted
# there inherit (a fresh volume copies the directory's owner and mode). The secrets' is 0750: conquer's
# group may read it, nobody else.
RUN groupadd --gid 10001 conquer \
 && useradd --create-home --uid 10001 --gid conquer conquer \
 && mkdir -p /var/lib/flower /var/lib/conquer-secrets \
 && chown conquer:conquer /var/lib/flower /var/lib/conquer-secrets \
 && chmod 0750 /var/lib/conquer-secrets
USER conquer

CMD ["celery", "-A", "tasks", "worker", "--loglevel=INFO"]
