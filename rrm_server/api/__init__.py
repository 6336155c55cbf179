"""HTTP API: per surface a protocol (schemas), a router (HTTP glue) and a serving module (logic)."""
