"""oneproxy: an OpenAI-compatible LLM gateway and account-pool manager."""

from .celery import app as celery_app

__all__ = ("celery_app",)
