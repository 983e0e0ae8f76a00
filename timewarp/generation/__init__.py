"""LLM text generation for synthetic question/answer data (OpenAI-compatible endpoints)."""
