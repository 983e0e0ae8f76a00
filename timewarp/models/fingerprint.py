"""What identifies a loaded model's replies, for caches keyed by the model.

A hub id names whatever the hub serves today, and a folder's file names, sizes and times
survive a retrained model written over it; only the weights themselves say which model
answers. The fingerprint hashes the loaded parameters (adapters included, in the precision
they run in, since that changes greedy replies too), the processor's settings, the chat
template and the tokenizer. It reads every weight once: seconds for a 7B model, small
beside generating with it.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["model_fingerprint"]


def model_fingerprint(model: Any, processor: Any, family_name: str) -> str:
    """sha256 hex digest of ``model``'s weights and ``processor`` (see the module docstring)."""
    import torch

    digest = hashlib.sha256(f"family\0{family_name}\0".encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy())
    digest.update(processor.to_json_string().encode())
    tokenizer = processor.tokenizer
    template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    digest.update(json.dumps(template, sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest.update(vocabulary.encode())
    return digest.hexdigest()
