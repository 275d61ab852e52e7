"""Tiny NLI models built offline for tests: real transformers architectures, random weights.

Each has its own label order in ``id2label``; the weights are scaled up so that scores are far from
uniform and a wrong entailment index or softmax would show.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "my card was declined charged twice refund invoice password reset login locked account billing sign in "
    "delivery order parcel late this ticket is about the a i to and of it for on with not can you help me "
    "where when why how please thanks hello example"
).split()


def build_tokenizer(directory: Path, model_max_length: int = 512):
    """A WordPiece tokenizer: the words above, plus single characters so any text tokenizes."""
    from transformers import BertTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *letters, *".,!?'-:;()"]
    vocab += [f"##{c}" for c in letters]
    directory.mkdir(parents=True, exist_ok=True)
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, model_max_length=model_max_length)


def build_nli_model(
    directory: Path, arch: str, id2label: dict[int, str], *, model_max_length: int = 512, seed: int = 0
):
    """Save a tiny ``bert`` or ``deberta-v2`` sequence classifier with ``id2label`` and a tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, DebertaV2Config

    tokenizer = build_tokenizer(directory, model_max_length)
    common = dict(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        initializer_range=0.2,
    )
    if arch == "bert":
        config = BertConfig(**common)
    elif arch == "deberta-v2":
        config = DebertaV2Config(
            **common,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            max_relative_positions=-1,
            position_buckets=16,
            type_vocab_size=0,
        )
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        # Larger logits, and contradiction opposite to entailment: single- and multi-label scores
        # then spread over (0, 1) instead of sitting near uniform or near 0.
        weight, bias = model.classifier.weight, model.classifier.bias
        weight.mul_(8.0)
        bias.zero_()
        labels = {v.lower(): k for k, v in id2label.items()}
        if "entailment" in labels and "contradiction" in labels:
            entail, contra = labels["entailment"], labels["contradiction"]
            weight[contra] = -weight[entail]
            model.eval()
            batch = tokenizer(
                ["my card was declined", "where is my parcel", "password reset please"],
                ["this ticket is about billing.", "this ticket is about delivery.", "this ticket is about login."],
                padding=True,
                return_tensors="pt",
            )
            centre = model(**batch).logits[:, entail].mean()
            bias[entail], bias[contra] = -centre, centre
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
