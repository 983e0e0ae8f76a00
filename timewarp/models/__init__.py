"""Local model helpers (tiny offline test checkpoints; video-LLM training later)."""
