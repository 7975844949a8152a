# mendbot in a container. See docs/operations.md → "Running in production".
#
#   docker build -t mendbot .
#   docker run -d --name mendbot --stop-timeout 60 --restart on-failure:5 \
#       -v /srv/mendbot:/app mendbot
#
# /app is meant to be the live checkout mounted from the host (a git clone on `main`, with
# `.env`, `config.yaml` and `data/` in it): deploys merge into it and fast-forward it, so it must
# outlive the container. The package is installed *editable* for that reason — the running code is
# whatever the checkout holds, which is what reload and restart apply; a plain `pip install .`
# would freeze the image's copy into site-packages. Without a mount the image's own copy runs (not
# a git repository: chat and commands work, self-improvement reports itself unavailable).
#
# The entry point is deploy/run.sh: it starts `mendbot run` again when it exits with the restart
# code 26 (a deploy changed bot/ or pyproject.toml, reinstalling first if the dependencies
# changed) and ends the container on any other code, so a configuration error (78) is not retried
# forever. tini (PID 1) passes `docker stop`'s SIGTERM on; mendbot drains before exiting, which is
# why the stop timeout is raised from Docker's default 10 s.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/mendbot \
    PATH=/opt/mendbot/bin:$PATH \
    MENDBOT_SUPERVISED=1

# git: worktrees, commits and merges of the self-improvement pipeline. The mounted checkout is
# usually owned by a host uid, which git refuses without safe.directory.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group mendbot \
    && git config --system --add safe.directory /app \
    && python -m venv /opt/mendbot \
    && install -d -o mendbot -g mendbot /app \
    && chown -R mendbot:mendbot /opt/mendbot

WORKDIR /app
COPY --chown=mendbot:mendbot pyproject.toml README.md ./
COPY --chown=mendbot:mendbot bot ./bot
COPY --chown=mendbot:mendbot cogs ./cogs
COPY --chown=mendbot:mendbot prompts ./prompts
COPY --chown=mendbot:mendbot config.example.yaml ./
COPY deploy/run.sh /usr/local/bin/mendbot-supervise
RUN chmod 755 /usr/local/bin/mendbot-supervise

USER mendbot
# The venv belongs to the mendbot user so run.sh can reinstall when pyproject.toml changes; the
# stamp it compares against is written here for the image's own pyproject.toml. mendbot.tools.warm
# writes the bytecode the sandbox's read-only view of the venv cannot (pytest's rewritten plugins).
RUN pip install -e ".[all]" \
    && python -m mendbot.tools.warm \
    && sha256sum pyproject.toml > /opt/mendbot/.mendbot-pyproject.sha256 \
    && mkdir -p data

# /health/ready answers once the bot is connected and serving (health.port, default 8765).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/health/ready', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "mendbot-supervise"]
CMD ["run"]
