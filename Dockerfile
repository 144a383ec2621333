# The production image: one image, three roles (web, worker, beat) chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tzdata: contacts' and the clinic's IANA time zones must resolve inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

COPY . .
# Versions pinned by the lock, as on a developer's machine.
RUN pip install -c requirements.lock . \
    && useradd --system --create-home --home-dir /var/lib/outreach outreach \
    && chown -R outreach /var/lib/outreach

USER outreach
ENV OUTREACH_WEB_HOST=0.0.0.0 \
    OUTREACH_WEB_PORT=8000 \
    OUTREACH_TEMPLATES_DIR=/app/templates
EXPOSE 8000

CMD ["outreach", "serve"]
