"""Log-probabilities of completions under a model: what DPO's reference values
(:mod:`timewarp.training.reference`) and the likelihood scorers
(:mod:`timewarp.evaluation.loglik`) both compute, so they agree exactly.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NON_MODEL_KEYS", "completion_logps", "unwrap_model"]

#: Batch keys that are not model inputs: the completion mask, SFT labels and the reference
#: columns DPO batches carry (``timewarp.training.reference.REF_CHOSEN`` / ``REF_REJECTED``).
NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "labels"})


def unwrap_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) and hasattr(model, "peft_config") else model


def completion_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Per row of ``batch``: the summed log-probability of its completion tokens
    (``completion_mask`` 1) given everything before them. Projects only those positions
    through the LM head, so the (batch, length, vocab) logits are never built."""
    import torch

    hf_model = unwrap_model(model)
    inputs = {key: value for key, value in batch.items() if key not in NON_MODEL_KEYS}
    hidden = hf_model.base_model(**inputs, use_cache=False).last_hidden_state[:, :-1]
    targets = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    lm_head = hf_model.get_output_embeddings()
    rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]
    logits = lm_head(hidden[mask].to(lm_head.weight.device)).float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(1, targets[mask].unsqueeze(1).to(logits.device))[:, 0]
    return torch.zeros(mask.shape[0], dtype=torch.float32, device=logits.device).index_add_(
        0, rows.to(logits.device), token_logps
    )
