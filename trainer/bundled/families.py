"""Family fixtures: small calculator agents of the Qwen3 and the Llama 3.1 architecture, each
with a chat template that behaves like its family's, built as the bundled model is.

The bundled model (`weights/clora-tiny`) is a Qwen2 with a template of its own. A customer runs
Qwen3 or Llama 3.1, whose templates do things the bundled one never does, and the loop must
survive them. Each template here is written from the public description of its family's
behaviour (not copied from a model repository):

**Qwen3** (`model_type` qwen3; vLLM parsers ``hermes`` and ``qwen3``)
- ChatML turns (``<|im_start|>role ... <|im_end|>``);
- a ``<think>`` block on the assistant turns after the last user message only: always on the
  last turn (empty when it has no reasoning), on earlier ones when they carry
  ``reasoning_content``; earlier turns lose theirs (the template rewrites history);
- ``enable_thinking=False`` puts an empty ``<think>\\n\\n</think>\\n\\n`` in the generation
  prompt;
- tool calls as ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``, tool results
  as ``<tool_response>`` blocks inside one *user* turn.

**Llama 3.1** (`model_type` llama; vLLM parser ``llama3_json``)
- ``<|begin_of_text|>`` and header tokens (``<|start_header_id|>role<|end_header_id|>``),
  turns ended by ``<|eot_id|>``;
- a system header that always carries the knowledge-cutoff and date lines, and
  ``Environment: ipython`` when tools are offered;
- the tool list in the first *user* message; tool calls as bare JSON
  ``{"name": ..., "parameters": ...}``; tool results in ``ipython`` turns, JSON-encoded.

The Qwen3 fixture always thinks before it acts, one fixed short thought ("I will use the
tools."), as a Qwen3 thinking model does by default; with ``enable_thinking=False`` its prompt
ends in an empty ``<think>`` block, a form it was not trained on.

Both list the tools compactly (``calculator(expression) final_answer(answer)``) where the real
templates write each tool's JSON schema: a tiny model's context is short, and the framing the
loop depends on (turn markers, call format, where results go, what is rewritten) is the
family's.

    python -m trainer.bundled.build --family qwen3 --out weights/clora-tiny-qwen3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.bundled.corpus import TurnFormat
from trainer.bundled.tokenizer import TokenizerSpec

# A message's text, whether its content is a string or a list of text parts.
_TEXT = (
    "{%- set ns.text = '' -%}"
    "{%- if m['content'] is string -%}{%- set ns.text = m['content'] -%}"
    "{%- elif m['content'] -%}{%- for part in m['content'] -%}"
    "{%- set ns.text = ns.text + part['text'] -%}{%- endfor -%}{%- endif -%}"
)
# One tool's compact signature: name(param,...).
_SIGNATURE = (
    "{%- set fn = tool['function'] if tool['function'] is defined else tool -%}"
    "{{- fn['name'] + '(' -}}"
    "{%- if fn['parameters'] is defined and fn['parameters']['properties'] is defined -%}"
    "{{- fn['parameters']['properties'] | list | join(',') -}}{%- endif -%}{{- ')' -}}"
)
# A call's arguments as JSON: a string as given (OpenAI clients), a mapping encoded (vLLM).
_ARGUMENTS = (
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{%- if fn['arguments'] is string -%}{%- set ns.args = fn['arguments'] -%}"
    "{%- else -%}{%- set ns.args = fn['arguments'] | tojson -%}{%- endif -%}"
)

QWEN3_TEMPLATE = (
    "{%- set ns = namespace(last_query=-1, text='', args='', reasoning='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' and not (m['content'] is string and "
    "m['content'].startswith('<tool_response>')) -%}{%- set ns.last_query = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set m = messages[0] -%}" + _TEXT + "{%- set system = ns.text -%}"
    "{%- else -%}{%- set system = '' -%}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' + system + ('\\n\\n' if system else '') + '# Tools\\n' -}}"
    "{%- for tool in tools -%}" + _SIGNATURE + "{{- '\\n' if not loop.last else '' -}}"
    "{%- endfor -%}{{- '<|im_end|>\\n' -}}"
    "{%- elif system -%}{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and loop.first -%}"
    "{%- elif m['role'] == 'assistant' -%}" + _TEXT + ""
    "{%- set ns.reasoning = m['reasoning_content'] if m['reasoning_content'] is string else '' -%}"
    "{%- if '</think>' in ns.text -%}"
    "{%- set ns.reasoning = ns.text.split('</think>')[0].split('<think>')[-1] -%}"
    "{%- set ns.text = ns.text.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if loop.index0 > ns.last_query and (loop.last or ns.reasoning) -%}"
    "{{- '<think>\\n' + ns.reasoning.strip('\\n') + '\\n</think>\\n\\n' -}}{%- endif -%}"
    "{{- ns.text -}}"
    "{%- if m['tool_calls'] -%}{%- for call in m['tool_calls'] -%}" + _ARGUMENTS + ""
    "{{- '\\n' if (not loop.first or ns.text) else '' -}}"
    "{{- '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' + ns.args -}}"
    "{{- '}\\n</tool_call>' -}}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif m['role'] == 'tool' -%}" + _TEXT + ""
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}"
    "{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + ns.text + '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}"
    "{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}" + _TEXT + ""
    "{{- '<|im_start|>' + m['role'] + '\\n' + ns.text + '<|im_end|>\\n' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}{%- endif -%}"
)

LLAMA31_TEMPLATE = (
    "{%- set ns = namespace(text='', args='', first_user=true) -%}"
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set m = messages[0] -%}" + _TEXT + "{%- set system = ns.text -%}"
    "{%- else -%}{%- set system = '' -%}{%- endif -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' -}}"
    "{%- if tools -%}{{- 'Environment: ipython\\n' -}}{%- endif -%}"
    "{%- if date_string is not defined -%}{%- set date_string = '26 Jul 2024' -%}{%- endif -%}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: ' + date_string + '\\n\\n' -}}"
    "{{- system + '<|eot_id|>' -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and loop.first -%}"
    "{%- elif m['role'] == 'assistant' -%}" + _TEXT + ""
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- if m['tool_calls'] -%}{%- for call in m['tool_calls'] -%}" + _ARGUMENTS + ""
    "{{- '; ' if not loop.first else '' -}}"
    "{{- '{\"name\": \"' + fn['name'] + '\", \"parameters\": ' + ns.args + '}' -}}"
    "{%- endfor -%}{%- else -%}{{- ns.text -}}{%- endif -%}"
    "{{- '<|eot_id|>' -}}"
    "{%- elif m['role'] == 'tool' or m['role'] == 'ipython' -%}" + _TEXT + ""
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + (ns.text | tojson) -}}"
    "{{- '<|eot_id|>' -}}"
    "{%- else -%}" + _TEXT + ""
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if m['role'] == 'user' and ns.first_user and tools -%}{{- 'Tools:' -}}"
    "{%- for tool in tools -%}{{- ' ' -}}" + _SIGNATURE + "{%- endfor -%}{{- '\\n\\n' -}}"
    "{%- endif -%}"
    "{%- if m['role'] == 'user' -%}{%- set ns.first_user = false -%}{%- endif -%}"
    "{{- ns.text + '<|eot_id|>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class ChatFamily:
    """What makes a family fixture its family: architecture, template, tokens, parsers."""

    name: str
    model_type: str
    """``config.json``'s ``model_type`` (what vLLM and `app.sampler.formats` read)."""
    tokenizer_class: str
    tokenizer: TokenizerSpec
    turns: TurnFormat
    end_tokens: tuple[str, ...]
    """Tokens that end generation (``generation_config.json``'s eos list)."""
    tool_parser: str
    """vLLM's tool-call parser for the family, and the environments' client-side reader."""


QWEN3 = ChatFamily(
    name="qwen3",
    model_type="qwen3",
    # Qwen3 checkpoints name the Qwen2 class: transformers rebuilds Qwen2's pipeline, which
    # is the one the merges are trained on (trainer/bundled/tokenizer.py).
    tokenizer_class="Qwen2Tokenizer",
    tokenizer=TokenizerSpec(
        template=QWEN3_TEMPLATE,
        special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        plain=(
            "<tool_call>",
            "</tool_call>",
            "<think>",
            "</think>",
            "<tool_response>",
            "</tool_response>",
        ),
        eos="<|im_end|>",
        pad="<|endoftext|>",
        vocab_size=576,
    ),
    turns=TurnFormat(
        name_prefix='<tool_call>\n{"name": "',
        end_of_turn="<|im_end|>",
        reasoning="I will use the tools.",
        reasoning_share=1.0,
    ),
    end_tokens=("<|im_end|>", "<|endoftext|>"),
    tool_parser="hermes",
)

LLAMA3 = ChatFamily(
    name="llama3",
    model_type="llama",
    tokenizer_class="PreTrainedTokenizerFast",
    tokenizer=TokenizerSpec(
        template=LLAMA31_TEMPLATE,
        special=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
        ),
        plain=(),
        eos="<|eot_id|>",
        pad="<|end_of_text|>",
        bos="<|begin_of_text|>",
        vocab_size=576,
    ),
    turns=TurnFormat(name_prefix='{"name": "', end_of_turn="<|eot_id|>"),
    end_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    tool_parser="llama3_json",
)

FAMILIES = {family.name: family for family in (QWEN3, LLAMA3)}


def family_dir(name: str) -> Path:
    """Where a family's fixture is shipped: ``weights/clora-tiny-<name>``."""
    return Path(__file__).resolve().parents[2] / "weights" / f"clora-tiny-{name}"
