"""The bundled model's tokenizer: byte-level BPE trained here, plus a Hermes chat template.

The normalizer and pre-tokenizer are exactly Qwen2's (NFC; Qwen2's split regex, which
puts every digit in its own piece; byte-level), because ``transformers`` 5 rebuilds that
pipeline for any ``qwen2`` model whatever ``tokenizer.json`` says: training the merges on
the same pipeline makes the saved file, ``transformers`` 4 and 5, and vLLM agree.
Digits are single tokens (so copying numbers is per-digit). ``<|im_start|>``,
``<|im_end|>`` and ``<|endoftext|>`` are special tokens; ``<tool_call>`` and
``</tool_call>`` are ordinary added tokens, single ids that survive
``skip_special_tokens=True``, so vLLM's ``hermes`` parser always sees them in the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
TOOL_TOKENS = (TOOL_CALL_START, TOOL_CALL_END)

#: Qwen2's pre-tokenization regex (transformers ``tokenization_qwen2.PRETOKENIZE_REGEX``).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
#: The tokenizer class named in tokenizer_config.json (Qwen2TokenizerFast in transformers 4).
TOKENIZER_CLASS = "Qwen2Tokenizer"

#: Total vocabulary including the special and tool tokens (also the model's vocab_size).
VOCAB_SIZE = 512

# One line on purpose: with no literal newlines, trim_blocks/lstrip_blocks cannot change it.
# Tools are listed compactly as name(param,...) so prompts stay short for a tiny model.
# Tool calls render exactly as the model emits them and as vLLM's hermes parser reads them:
# <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
    "{%- else -%}{%- for part in messages[0]['content'] -%}"
    "{%- set ns.system = ns.system + part['text'] -%}{%- endfor -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- if ns.system or tools -%}"
    "{{- '<|im_start|>system\\n' + ns.system -}}"
    "{%- if tools -%}"
    "{{- '\\n' if ns.system else '' -}}{{- 'Tools:' -}}"
    "{%- for tool in tools -%}"
    "{%- set fn = tool['function'] if tool['function'] is defined else tool -%}"
    "{{- ' ' + fn['name'] + '(' -}}"
    "{%- if fn['parameters'] is defined and fn['parameters']['properties'] is defined -%}"
    "{{- fn['parameters']['properties'] | list | join(',') -}}"
    "{%- endif -%}"
    "{{- ')' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if not (loop.first and message['role'] == 'system') -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- elif message['content'] -%}{%- for part in message['content'] -%}"
    "{{- part['text'] -}}{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' and message['tool_calls'] -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{{- '<tool_call>{\"name\": \"' + fn['name'] + '\", \"arguments\": ' -}}"
    "{%- if fn['arguments'] is string -%}{{- fn['arguments'] -}}"
    "{%- else -%}{{- fn['arguments'] | tojson -}}{%- endif -%}"
    "{{- '}</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token of the vocabulary."""
    value = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(value, int):
        raise KeyError(token)
    return value


def _strip_special(texts: Iterable[str], tokens: Sequence[str]) -> Iterable[str]:
    """Split rendered conversations at special/tool tokens so BPE never learns across them."""
    for text in texts:
        pieces = [text]
        for token in tokens:
            pieces = [p for piece in pieces for p in piece.split(token)]
        yield from (p for p in pieces if p)


@dataclass(frozen=True)
class TokenizerSpec:
    """What a trained tokenizer holds besides its merges: the marker tokens and the chat
    template. The defaults are the bundled model's; a family fixture brings its own
    (`trainer.bundled.families`)."""

    template: str = CHAT_TEMPLATE
    special: tuple[str, ...] = SPECIAL_TOKENS
    """Special tokens (skipped by ``skip_special_tokens``), trained first, at ids 0, 1, ..."""
    plain: tuple[str, ...] = TOOL_TOKENS
    """Ordinary added tokens: single ids that survive ``skip_special_tokens``."""
    eos: str = IM_END
    """The end of an assistant turn."""
    pad: str = ENDOFTEXT
    bos: str | None = None
    vocab_size: int = VOCAB_SIZE


def train_tokenizer(
    texts: Iterable[str], spec: TokenizerSpec = TokenizerSpec()
) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on rendered conversations; return the HF fast tokenizer."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(spec.plain),
        min_frequency=2,
        special_tokens=list(spec.special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_strip_special(texts, (*spec.special, *spec.plain)), trainer=trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.plain])
    extra = {"bos_token": spec.bos} if spec.bos else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=spec.eos,
        pad_token=spec.pad,
        chat_template=spec.template,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
        **extra,
    )
    if len(tokenizer) > spec.vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, more than {spec.vocab_size}")
    return tokenizer
