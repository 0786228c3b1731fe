"""Formats other libraries read, written from a loaded zoo model: a sentence-transformers folder
(``SentenceTransformer(path)`` embeds as ``reprzoo.load(name).encode`` does) and word vectors in the word2vec text
format (``gensim.models.KeyedVectors.load_word2vec_format``). The layouts are those libraries' own."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reprzoo.atomic import atomic_write_bytes, atomic_write_text
from reprzoo.errors import ReprzooError

POOLING_MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}


def save_sentence_transformers(encoder, path: str | Path) -> Path:
    """Write ``encoder`` (a loaded text model whose representation is a BERT encoder with cls, mean or max pooling)
    as a sentence-transformers folder: ``modules.json`` with a ``Transformer`` module (``0_Transformer``: the
    ``BertModel``'s config and weights and the model's ``tokenizer.json``) and a ``Pooling`` module
    (``1_Pooling``). ``SentenceTransformer(path).encode(texts)`` then gives ``encoder.encode(texts)``."""
    module = encoder.encoder
    if not sentence_transformers_ready(module):
        raise ReprzooError(
            f"{encoder.name}: only a BERT text encoder with cls, mean or max pooling exports to sentence-transformers "
            f"(its representation is a {type(module).__name__})"
        )
    pre = encoder.config.get("preprocessing") or {}
    if pre.get("tokenizer") != "tokenizer":
        raise ReprzooError(f"{encoder.name} has no tokenizer.json to export (its text preprocessing is {pre.get('tokenizer')!r})")
    tokenizer_json = encoder.preprocessing_file(pre["file"]).read_bytes()
    max_length = min(int(pre.get("max_length", module.max_length)), module.max_length)
    note = f"Exported by reprzoo from `{encoder.source}` (revision {encoder.revision}); see that model's card for how it was trained and measured."
    return write_sentence_transformers(module, tokenizer_json, max_length, path, encoder.name, note)


def sentence_transformers_ready(module) -> bool:
    """Whether ``module`` (a method's exported representation) is what a sentence-transformers folder computes: a
    BERT :class:`~reprzoo.backbones.text.TransformerEncoder` with cls, mean or max pooling."""
    from reprzoo.backbones.text import TransformerEncoder

    return type(module) is TransformerEncoder and module.pooling in POOLING_MODES


def write_sentence_transformers(
    module, tokenizer_json: bytes, max_length: int, path: str | Path, name: str, note: str = "", readme: bool = True
) -> Path:
    """The sentence-transformers folder of a :class:`~reprzoo.backbones.text.TransformerEncoder` and its
    tokenizer (what :func:`save_sentence_transformers` writes for a loaded model, and what a push adds to a text
    model's repository: there ``readme=False`` leaves the model card in place)."""
    from safetensors.torch import save_file

    if module.pooling not in POOLING_MODES:
        raise ReprzooError(f"pooling {module.pooling!r} has no sentence-transformers Pooling mode")
    out = Path(path)
    transformer, pooling = out / "0_Transformer", out / "1_Pooling"
    transformer.mkdir(parents=True, exist_ok=True)
    pooling.mkdir(parents=True, exist_ok=True)
    config = module.config.to_dict()
    config.update(architectures=["BertModel"], model_type="bert")
    atomic_write_text(transformer / "config.json", json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in module.model.state_dict().items()}
    save_file(state, str(transformer / "model.safetensors"), metadata={"format": "pt"})
    atomic_write_bytes(transformer / "tokenizer.json", tokenizer_json)
    specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **specials}
    atomic_write_text(transformer / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2) + "\n")
    atomic_write_text(transformer / "special_tokens_map.json", json.dumps(specials, indent=2) + "\n")
    atomic_write_text(
        transformer / "sentence_bert_config.json", json.dumps({"max_seq_length": max_length, "do_lower_case": False}) + "\n"
    )
    pool = {"word_embedding_dimension": module.num_features, **{v: k == module.pooling for k, v in POOLING_MODES.items()}}
    atomic_write_text(pooling / "config.json", json.dumps(pool, indent=2) + "\n")
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    atomic_write_text(out / "modules.json", json.dumps(modules, indent=2) + "\n")
    atomic_write_text(out / "config_sentence_transformers.json", json.dumps({"similarity_fn_name": "cosine"}) + "\n")
    if readme:
        atomic_write_text(out / "README.md", f"# {name}\n\n{note}\n")
    return out


def save_word2vec_format(encoder, path: str | Path) -> Path:
    """Write a word-vector model in the word2vec text format: a ``count dim`` header, then a word and its vector per
    line, most frequent words first."""
    from reprzoo.datamodules.text.preprocess import WordLookup

    tokenizer = encoder.tokenizer
    words = getattr(getattr(tokenizer, "vocabulary", None), "words", None)
    if not isinstance(tokenizer, WordLookup) and words is None:
        raise ReprzooError(f"{encoder.name} is not a word-vector model (its text preprocessing is {tokenizer.kind})")
    device = next(encoder.encoder.parameters()).device
    with torch.no_grad():
        vectors = torch.cat(
            [encoder.embed(torch.arange(s, min(s + 8192, len(words)), device=device)) for s in range(0, len(words), 8192)]
        )
    lines = [f"{len(words)} {vectors.shape[1]}"]
    lines += [w + " " + " ".join(f"{v:.6g}" for v in row) for w, row in zip(words, vectors.cpu().tolist())]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


__all__ = [
    "save_sentence_transformers",
    "save_word2vec_format",
    "sentence_transformers_ready",
    "write_sentence_transformers",
]
