"""The mGTE model classes. Everything in this folder ships as self-contained Hub remote code."""

from .attention_mgte import (
    MGTE_ATTENTION_FUNCTIONS,
    PackedSeqs,
    PaddedLayout,
    available_implementations,
    check_implementation,
)
from .configuration_mgte import AUTO_MAP, ROPE_TYPES, MgteConfig, convert_config_dict
from .modeling_mgte import (
    MgteEmbeddingOutput,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
    MgtePackedOutput,
    MgtePreTrainedModel,
    MgteRotaryEmbedding,
    apply_rope,
    copy_modeling_files,
    dense_embedding,
    rope_cos_sin,
    rope_frequencies,
    rope_inv_freq,
    sparse_token_weights,
    token_weights_to_dicts,
)


def register_auto_classes() -> None:
    """Make the Auto classes resolve model_type "mgte" to these classes without trust_remote_code."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoModelForTextEncoding,
        AutoModelForTokenClassification,
    )

    AutoConfig.register("mgte", MgteConfig, exist_ok=True)
    for auto_cls, model_cls in (
        (AutoModel, MgteModel),
        (AutoModelForMaskedLM, MgteForMaskedLM),
        (AutoModelForSequenceClassification, MgteForSequenceClassification),
        (AutoModelForTokenClassification, MgteForTokenClassification),
        (AutoModelForTextEncoding, MgteForEmbedding),
    ):
        auto_cls.register(MgteConfig, model_cls, exist_ok=True)


__all__ = [
    "AUTO_MAP",
    "MGTE_ATTENTION_FUNCTIONS",
    "MgteConfig",
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePackedOutput",
    "MgtePreTrainedModel",
    "PackedSeqs",
    "PaddedLayout",
    "ROPE_TYPES",
    "MgteRotaryEmbedding",
    "apply_rope",
    "available_implementations",
    "check_implementation",
    "convert_config_dict",
    "copy_modeling_files",
    "dense_embedding",
    "register_auto_classes",
    "rope_cos_sin",
    "rope_frequencies",
    "rope_inv_freq",
    "sparse_token_weights",
    "token_weights_to_dicts",
]
