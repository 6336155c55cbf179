"""rrm-server: serving for generative reward reasoning models (RRM) on vLLM."""

__version__ = "0.1.0"
