"""Running the service: metrics, logs, health checks and retention."""
