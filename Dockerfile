# The app image used by docker-compose.yml: the CLI (`routing-app`) and the Faust workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# pyproject.toml names README.md as the readme and force-includes schemas/, so the build
# needs all of them.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY routing_app ./routing_app
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 routing
USER routing
# Faust keeps table state in ./<app id>-data; the home folder is writable.
WORKDIR /home/routing

CMD ["routing-app", "--help"]
