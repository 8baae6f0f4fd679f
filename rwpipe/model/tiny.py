"""Tiny random causal LMs with real tokenizers: offline, CPU, for tests and smoke runs.

`build_tiny_lm()` saves a 2-layer Llama with hidden size 16 in about a second. Its tokenizer
is either the SmolLM2 one (from a materialised directory, so prompts tokenize as in the real
runs) or a byte-level BPE built here with no training and no downloads. Both speak ChatML and
stop at `<|im_end|>`, so chat-template and stop-token code paths run the same as with the
real model.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from rwpipe import artifacts

if TYPE_CHECKING:  # heavy: imported inside the functions that use them
    from transformers import LlamaConfig, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# Same ids (0, 1, 2) as in SmolLM2, so tests can hard-code neither and still agree with it.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN = "<|im_end|>"

# ChatML, as SmolLM2-Instruct writes it but without its default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer() -> "PreTrainedTokenizerFast":
    """A byte-level BPE tokenizer with no merges: 3 special tokens + 256 byte tokens.

    No merges means no training, so the vocabulary is fixed and identical on every machine,
    and every string still round-trips through bytes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,  # SmolLM2 pads with its eos too
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids for a decoder
    )


def build_tiny_lm(out_dir: Path, seed: int = 0, tokenizer_from: Path | None = None) -> Path:
    """Save a tiny random LlamaForCausalLM and its tokenizer to `out_dir`, atomically.

    Args:
        out_dir: directory to create or replace.
        seed: weight-init seed; the same seed gives the same weights.
        tokenizer_from: a model directory whose tokenizer to reuse (e.g. the materialised
            SmolLM2); None builds the byte-level tokenizer of `build_tiny_tokenizer`.

    Returns:
        `out_dir`.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    if tokenizer_from is None:
        tokenizer = build_tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_from, local_files_only=True)
    config = _tiny_config(tokenizer)
    # fork_rng: seed the init without changing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    with artifacts.atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def _tiny_config(tokenizer: "PreTrainedTokenizerBase") -> "LlamaConfig":
    """The tiny Llama shape; vocabulary and special ids come from the tokenizer."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in SmolLM2 (9 heads, 3 kv)
        # Not hidden/heads = 4: vLLM's attention kernels need a head size of at least 32 on CPU
        # and a multiple of 8 with FlashAttention, and the tiny model must load in vLLM too.
        head_dim=32,
        intermediate_size=32,
        max_position_embeddings=2048,
        tie_word_embeddings=True,  # as SmolLM2; halves the parameters of a large vocabulary
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
