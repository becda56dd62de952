# The llmpulse worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
COPY schemas ./schemas
COPY alerting ./alerting
RUN pip install --no-cache-dir . && useradd --system --home /app llmpulse && mkdir -p /data \
    && chown llmpulse /data
USER llmpulse
ENV LLMPULSE_DATA_DIR=/data
EXPOSE 6066
ENTRYPOINT ["llmpulse"]
CMD ["worker", "--loglevel", "info"]
