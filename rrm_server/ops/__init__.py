"""Operations: Prometheus metrics, structured logs, self-protection."""
