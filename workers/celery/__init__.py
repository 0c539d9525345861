"""The Celery side: the job as a chord of chunk tasks, sent through a broker to `celery worker`s.

The modules, roughly in the order a job meets them:

    settings.py     one frozen `Settings`, read from the environment once, that every process of a
                    stack builds alike (broker URL, key prefix, time limits); loads nothing heavy
    brokers/        the broker seam: what depends on which broker carries the messages, one module
                    per broker behind the `Broker` protocol (Redis, RabbitMQ; brokers/redis.py also
                    serves the result backend, which is Redis whatever the broker), and
                    brokers/rabbitmq_node.py, which runs a private RabbitMQ node
    app.py          the Celery app and its two thin tasks, `conquer.chunk` and `conquer.combine`,
                    over `tasks.job`'s pure functions: what `celery -A tasks worker` runs
    jobstore.py     the job store: each job's record in Redis (chunks done and failed, who ran each,
                    the answer), read in one round trip whatever the number of chunks
    client.py       a connection to a running stack: submit a job, follow it, cancel it, list workers
    consumers.py    whether a worker consumes the stack's queue, asked before anything is sent
    results.py      Celery's result backend from the client's side: waking when the answer is out
    kombu_fixes.py  the patches to kombu (and Celery) that send a job all or nothing, each naming
                    the upstream issue it works around and when it can go
    chord.py        the `celery` executor (`conquer run --on celery`): deploy, run, verified report
    localstack.py   a private stack on this machine — embedded broker (Redis, or a private RabbitMQ
                    node with Redis for results), workers, Flower (`conquer up`)
    launcher.py     `python -m workers.celery.launcher PID CMD`: a command killed when PID dies

How a job flows:

1. `Client.submit` records the job in the job store, then sends `chord(group(chunk × K), combine)`:
   K messages of a few bytes each (a chunk's range, never its data), all of them or none.
2. A worker's pool process takes one message at a time, marks the chunk started in the job store,
   computes it (`tasks.run_chunk`), records who ran it, and only then acknowledges it: a worker that
   dies mid-chunk leaves its message to be delivered again.
3. The result backend counts the partials in; the last one triggers `conquer.combine` on a worker,
   which adds them up and records the answer in the job store.
4. The client, polling the job store (and woken when the answer is published), sees the job over;
   the `celery` executor then checks the answer against the job's independent check.

Layering: `tasks` (the pure job) never imports this package. The one module outside `workers` and
`conquer` that does is `tasks/celery.py`, the entry point Celery's own CLI finds by name
(`celery -A tasks`), which nothing in the product imports.
"""
