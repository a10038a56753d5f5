"""transformers' own common model and config tests over every mGTE class, as every model merged into transformers runs.

`ModelTesterMixin` and `ConfigTester` come from the sdist of the installed transformers version (see
`transformers_common.py`). The tester mirrors transformers' own GTE test (vocab 99, hidden 32, 2 layers, 4 heads,
batch 13 × 7 tokens, dropout on). The mixin draws ids and attention masks from an unseeded module RNG, so the whole
class runs once per seed in `SEEDS` (masks with holes, one-token rows and lengths whose mean equals the first one all
occur among them).

Skips, each either "not applicable to an encoder" or "needs hardware or a package absent here", are listed in
`tests/README.md`; the mixin's own skip messages say which.
"""

import random
import unittest

import torch

from mgte_hf import (
    MgteConfig,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
)
from transformers_common import load_common_tests, register_model_names


modeling_common, configuration_common = load_common_tests()
ModelTesterMixin, ids_tensor, random_attention_mask = (
    modeling_common.ModelTesterMixin, modeling_common.ids_tensor, modeling_common.random_attention_mask)
ConfigTester = configuration_common.ConfigTester
register_model_names("mgte", {
    "MODEL_MAPPING_NAMES": "MgteModel",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "MgteForMaskedLM",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "MgteForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "MgteForTokenClassification",
    "MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES": "MgteForEmbedding",
})

SEEDS = (0, 1, 2, 3, 4)


class MgteModelTester:
    def __init__(self, parent, batch_size=13, seq_length=7, is_training=True, use_input_mask=True,
                 use_token_type_ids=True, use_labels=True, vocab_size=99, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=16,
                 type_sequence_label_size=2, initializer_range=0.02, num_labels=3, num_choices=4):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.use_input_mask = use_input_mask
        self.use_token_type_ids = use_token_type_ids
        self.use_labels = use_labels
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.num_labels = num_labels
        self.num_choices = num_choices

    def get_config(self) -> MgteConfig:
        return MgteConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act, hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range)

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = random_attention_mask([self.batch_size, self.seq_length]) if self.use_input_mask else None
        token_type_ids = (ids_tensor([self.batch_size, self.seq_length], self.type_vocab_size)
                          if self.use_token_type_ids else None)
        sequence_labels = token_labels = choice_labels = None
        if self.use_labels:
            sequence_labels = ids_tensor([self.batch_size], self.type_sequence_label_size)
            token_labels = ids_tensor([self.batch_size, self.seq_length], self.num_labels)
            choice_labels = ids_tensor([self.batch_size], self.num_choices)
        return (self.get_config(), input_ids, token_type_ids, input_mask, sequence_labels, token_labels,
                choice_labels)

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, token_type_ids, input_mask, *_ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": input_mask}

    # ------------------------------------------------------------------------------------------ per-head shapes
    def _eval_model(self, model_class, config):
        return model_class(config).eval()

    def create_and_check_model(self, config, input_ids, token_type_ids, input_mask, *_):
        model = self._eval_model(MgteModel, config)
        for kwargs in ({"attention_mask": input_mask, "token_type_ids": token_type_ids},
                       {"token_type_ids": token_type_ids}, {}):
            result = model(input_ids, **kwargs)
            self.parent.assertEqual(result.last_hidden_state.shape,
                                    (self.batch_size, self.seq_length, self.hidden_size))
        self.parent.assertIsNone(result.pooler_output)

    def create_and_check_model_without_token_types(self, config, input_ids, token_type_ids, input_mask, *_):
        config.type_vocab_size = 0
        model = self._eval_model(MgteModel, config)
        self.parent.assertFalse(hasattr(model.embeddings, "token_type_embeddings"))
        result = model(input_ids, attention_mask=input_mask)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))

    def create_and_check_for_masked_lm(self, config, input_ids, token_type_ids, input_mask, sequence_labels,
                                       token_labels, choice_labels):
        model = self._eval_model(MgteForMaskedLM, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))

    def create_and_check_for_sequence_classification(self, config, input_ids, token_type_ids, input_mask,
                                                     sequence_labels, token_labels, choice_labels):
        config.num_labels = self.num_labels
        model = self._eval_model(MgteForSequenceClassification, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=sequence_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))

    def create_and_check_for_token_classification(self, config, input_ids, token_type_ids, input_mask,
                                                  sequence_labels, token_labels, choice_labels):
        config.num_labels = self.num_labels
        model = self._eval_model(MgteForTokenClassification, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.num_labels))

    def create_and_check_for_embedding(self, config, input_ids, token_type_ids, input_mask, *_):
        model = self._eval_model(MgteForEmbedding, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids)
        self.parent.assertEqual(result.dense.shape, (self.batch_size, self.hidden_size))
        self.parent.assertEqual(result.sparse.shape, (self.batch_size, self.seq_length))


class MgteCommonTest(ModelTesterMixin):
    """The mixin's tests over the encoder and transformers' heads; `seed` seeds the mixin's RNG (ids, masks) and torch
    before each test."""

    seed = 0
    all_model_classes = (MgteModel, MgteForMaskedLM, MgteForSequenceClassification, MgteForTokenClassification)
    model_split_percents = [0.5, 0.8, 0.9]
    _torch_compile_train_cls = MgteForMaskedLM  # test_torch_compile_for_training (slow): fullgraph, padded batch

    def setUp(self):
        modeling_common.global_rng.seed(self.seed)
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        self.model_tester = MgteModelTester(self)
        # transformers' GTE test uses hidden_size 37 with the default 12 heads; MgteConfig refuses a width its heads
        # do not divide into even (rotary) halves, so 40 and 4 heads.
        self.config_tester = ConfigTester(self, config_class=MgteConfig, hidden_size=40, num_attention_heads=4)

    def test_config(self):
        self.config_tester.run_common_tests()

    def _check(self, name: str):
        getattr(self.model_tester, f"create_and_check_{name}")(*self.model_tester.prepare_config_and_inputs())

    def test_model(self):
        self._check("model")

    def test_model_without_token_types(self):
        self._check("model_without_token_types")

    def test_for_masked_lm(self):
        self._check("for_masked_lm")

    def test_for_sequence_classification(self):
        self._check("for_sequence_classification")

    def test_for_token_classification(self):
        self._check("for_token_classification")


class MgteEmbeddingCommonTest(ModelTesterMixin):
    """The mixin's tests over the TRM head, `MgteForEmbedding` (AutoModelForTextEncoding).

    It returns vectors and token weights, no loss (its contrastive, Matryoshka and sparse losses live in
    `mgte_hf.training.losses`), so the mixin's training tests, which call `.loss`, do not apply; its gradient
    checkpointing is tested in `test_modeling_mgte.py`.
    """

    seed = 0
    all_model_classes = (MgteForEmbedding,)
    model_split_percents = [0.5, 0.8, 0.9]

    def setUp(self):
        modeling_common.global_rng.seed(self.seed)
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        self.model_tester = MgteModelTester(self)

    def test_for_embedding(self):
        self.model_tester.create_and_check_for_embedding(*self.model_tester.prepare_config_and_inputs())

    def _no_loss(self):
        self.skipTest("not applicable: MgteForEmbedding computes no loss (see the class docstring)")

    test_training = test_training_gradient_checkpointing = _no_loss
    test_training_gradient_checkpointing_use_reentrant_false = _no_loss
    test_training_gradient_checkpointing_use_reentrant_true = _no_loss


for _seed in SEEDS:
    for _base, _prefix in ((MgteCommonTest, "TestMgteCommon"), (MgteEmbeddingCommonTest, "TestMgteEmbeddingCommon")):
        _name = f"{_prefix}Seed{_seed}"
        globals()[_name] = type(_name, (_base, unittest.TestCase), {"seed": _seed})
del _seed, _base, _prefix, _name
