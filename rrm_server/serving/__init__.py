"""The service, apart from HTTP: a request resolved once, its matches, each vote, the reward rules
and the runtime that holds the engine. Nothing here imports FastAPI or ``rrm_server.api``."""
