"""Application metrics sent by ptracker.sdk: LLM calls, checkpoints, custom metrics."""
