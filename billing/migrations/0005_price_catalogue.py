"""A catalogue of public list prices for the common models of OpenAI,
Anthropic, Google Gemini, DeepSeek, Alibaba Qwen, Zhipu GLM, Moonshot,
Baidu ERNIE and Mistral, in USD per 1M tokens (input, output, cached input).

Source: LiteLLM's maintained price map, ``litellm/model_prices_and_context_window_backup.json``
inside the litellm 1.110.2 wheel from PyPI, read on 2026-11-28 (the "as of"
date; the file carries no date of its own). Per-token prices there were
multiplied by 1,000,000 and rounded to 6 decimals. Only the rows below were
taken, as literals: nothing is read at run time and litellm is not a
dependency. Each row records its source key in ``ModelPrice.source``.

Notes on the source:
- Qwen prices are LiteLLM's ``dashscope/`` (international endpoint) rows and
  GLM prices its ``zai/`` (Z.ai) rows, both in USD.
- LiteLLM lists no first-party Baidu Qianfan prices; the ERNIE rows are the
  prices of the resellers it does list (Novita AI for ERNIE 4.5, AIHubMix
  for ERNIE 5.1). Check them against your Qianfan contract.
- Tiered prices (e.g. Gemini 2.5 Pro above 200k prompt tokens) and cache
  writes are not modelled; the base tier is recorded.

``get_or_create`` keeps every existing row as it is, so an operator's price
is never overwritten; an existing row whose prices equal the catalogue's and
that has no source yet (the 0003 seed) only gets its source recorded.
"""

import datetime
from decimal import Decimal

from django.db import migrations

AS_OF = datetime.date(2026, 11, 28)
SOURCE = "litellm 1.110.2 model_prices_and_context_window_backup.json: {}"

PRICES = [
    # model, input, output, cached input (None: same as input), source key
    # OpenAI
    ("gpt-5.5", "5", "30", "0.5", "gpt-5.5"),
    ("gpt-5.4", "2.5", "15", "0.25", "gpt-5.4"),
    ("gpt-5.4-mini", "0.75", "4.5", "0.075", "gpt-5.4-mini"),
    ("gpt-5.4-nano", "0.2", "1.25", "0.02", "gpt-5.4-nano"),
    ("gpt-5.2", "1.75", "14", "0.175", "gpt-5.2"),
    ("gpt-5.1", "1.25", "10", "0.125", "gpt-5.1"),
    ("gpt-5", "1.25", "10", "0.125", "gpt-5"),
    ("gpt-5-mini", "0.25", "2", "0.025", "gpt-5-mini"),
    ("gpt-5-nano", "0.05", "0.4", "0.005", "gpt-5-nano"),
    ("gpt-5-chat-latest", "1.25", "10", "0.125", "gpt-5-chat-latest"),
    ("gpt-4.1", "2", "8", "0.5", "gpt-4.1"),
    ("gpt-4.1-mini", "0.4", "1.6", "0.1", "gpt-4.1-mini"),
    ("gpt-4.1-nano", "0.1", "0.4", "0.025", "gpt-4.1-nano"),
    ("gpt-4o", "2.5", "10", "1.25", "gpt-4o"),
    ("gpt-4o-mini", "0.15", "0.6", "0.075", "gpt-4o-mini"),
    ("gpt-4-turbo", "10", "30", None, "gpt-4-turbo"),
    ("gpt-4", "30", "60", None, "gpt-4"),
    ("gpt-3.5-turbo", "0.5", "1.5", None, "gpt-3.5-turbo"),
    ("o1", "15", "60", "7.5", "o1"),
    ("o3", "2", "8", "0.5", "o3"),
    ("o3-mini", "1.1", "4.4", "0.55", "o3-mini"),
    ("o4-mini", "1.1", "4.4", "0.275", "o4-mini"),
    ("text-embedding-3-small", "0.02", "0", None, "text-embedding-3-small"),
    ("text-embedding-3-large", "0.13", "0", None, "text-embedding-3-large"),
    ("text-embedding-ada-002", "0.1", "0", None, "text-embedding-ada-002"),
    ("omni-moderation-latest", "0", "0", None, "omni-moderation-latest"),
    # Anthropic
    ("claude-opus-4-7", "5", "25", "0.5", "claude-opus-4-7"),
    ("claude-opus-4-6", "5", "25", "0.5", "claude-opus-4-6"),
    ("claude-opus-4-5", "5", "25", "0.5", "claude-opus-4-5"),
    ("claude-opus-4-5-20251101", "5", "25", "0.5", "claude-opus-4-5-20251101"),
    ("claude-sonnet-4-6", "3", "15", "0.3", "claude-sonnet-4-6"),
    ("claude-sonnet-4-5", "3", "15", "0.3", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5-20250929", "3", "15", "0.3", "claude-sonnet-4-5-20250929"),
    ("claude-haiku-4-5", "1", "5", "0.1", "claude-haiku-4-5"),
    ("claude-haiku-4-5-20251001", "1", "5", "0.1", "claude-haiku-4-5-20251001"),
    # Google Gemini
    ("gemini-3.1-pro-preview", "2", "12", "0.2", "gemini/gemini-3.1-pro-preview"),
    ("gemini-3-flash-preview", "0.5", "3", "0.05", "gemini/gemini-3-flash-preview"),
    ("gemini-3.1-flash-lite", "0.25", "1.5", "0.025", "gemini/gemini-3.1-flash-lite"),
    ("gemini-2.5-pro", "1.25", "10", "0.125", "gemini/gemini-2.5-pro"),
    ("gemini-2.5-flash", "0.3", "2.5", "0.03", "gemini/gemini-2.5-flash"),
    ("gemini-2.5-flash-lite", "0.1", "0.4", "0.01", "gemini/gemini-2.5-flash-lite"),
    ("gemini-pro-latest", "2", "12", "0.2", "gemini/gemini-pro-latest"),
    ("gemini-flash-latest", "0.75", "3.75", "0.075", "gemini/gemini-flash-latest"),
    ("gemini-flash-lite-latest", "0.3", "2.5", "0.03", "gemini/gemini-flash-lite-latest"),
    ("gemini-embedding-001", "0.15", "0", None, "gemini/gemini-embedding-001"),
    # DeepSeek
    ("deepseek-chat", "0.28", "0.42", "0.028", "deepseek/deepseek-chat"),
    ("deepseek-reasoner", "0.28", "0.42", "0.028", "deepseek/deepseek-reasoner"),
    ("deepseek-v4-flash", "0.3", "1.2", "0.006", "deepseek/deepseek-v4-flash"),
    ("deepseek-v4-pro", "1.32", "3.96", "0.044", "deepseek/deepseek-v4-pro"),
    ("deepseek-v3.2", "0.28", "0.4", "0.028", "deepseek/deepseek-v3.2"),
    # Alibaba Qwen
    ("qwen3.8-max", "2", "6", "0.25", "dashscope/qwen3.8-max"),
    ("qwen3.8-flash", "0.15", "0.47", "0.016", "dashscope/qwen3.8-flash"),
    ("qwen3.7-max", "2.5", "7.5", "0.5", "dashscope/qwen3.7-max"),
    ("qwen-max", "1.6", "6.4", None, "dashscope/qwen-max"),
    ("qwen-plus", "0.4", "1.2", None, "dashscope/qwen-plus"),
    ("qwen-turbo", "0.05", "0.2", None, "dashscope/qwen-turbo"),
    ("qwen-coder", "0.3", "1.5", None, "dashscope/qwen-coder"),
    ("qwq-plus", "0.8", "2.4", None, "dashscope/qwq-plus"),
    ("qwen3-vl-235b-a22b-instruct", "0.4", "1.6", None, "dashscope/qwen3-vl-235b-a22b-instruct"),
    ("qwen3-vl-32b-instruct", "0.16", "0.64", None, "dashscope/qwen3-vl-32b-instruct"),
    ("qwen3-next-80b-a3b-instruct", "0.15", "1.2", None, "dashscope/qwen3-next-80b-a3b-instruct"),
    # Zhipu GLM
    ("glm-5.3", "1.4", "4.4", "0.26", "zai/glm-5.3"),
    ("glm-5.3-flash", "0.15", "0.5", "0.03", "zai/glm-5.3-flash"),
    ("glm-5.2", "1.4", "4.4", "0.26", "zai/glm-5.2"),
    ("glm-5.1", "1.4", "4.4", "0.26", "zai/glm-5.1"),
    ("glm-5", "1", "3.2", "0.2", "zai/glm-5"),
    ("glm-4.7", "0.6", "2.2", "0.11", "zai/glm-4.7"),
    ("glm-4.7-flash", "0", "0", "0", "zai/glm-4.7-flash"),
    ("glm-4.6", "0.6", "2.2", "0.11", "zai/glm-4.6"),
    ("glm-4.5", "0.6", "2.2", None, "zai/glm-4.5"),
    ("glm-4.5-air", "0.2", "1.1", None, "zai/glm-4.5-air"),
    ("glm-4.5-flash", "0", "0", None, "zai/glm-4.5-flash"),
    ("glm-4.5v", "0.6", "1.8", None, "zai/glm-4.5v"),
    # Moonshot
    ("kimi-k3", "3", "15", "0.3", "moonshot/kimi-k3"),
    ("kimi-k2.6", "0.95", "4", "0.16", "moonshot/kimi-k2.6"),
    ("kimi-k2.5", "0.6", "3", "0.1", "moonshot/kimi-k2.5"),
    ("moonshot-v1-8k", "0.2", "2", None, "moonshot/moonshot-v1-8k"),
    ("moonshot-v1-32k", "1", "3", None, "moonshot/moonshot-v1-32k"),
    ("moonshot-v1-128k", "2", "5", None, "moonshot/moonshot-v1-128k"),
    ("moonshot-v1-auto", "2", "5", None, "moonshot/moonshot-v1-auto"),
    # Baidu ERNIE
    ("ernie-4.5-300b-a47b", "0.28", "1.1", None, "novita/baidu/ernie-4.5-300b-a47b-paddle"),
    ("ernie-4.5-21b-a3b", "0.07", "0.28", None, "novita/baidu/ernie-4.5-21B-a3b"),
    ("ernie-4.5-vl-424b-a47b", "0.42", "1.25", None, "novita/baidu/ernie-4.5-vl-424b-a47b"),
    ("ernie-4.5-vl-28b-a3b", "0.14", "0.56", None, "novita/baidu/ernie-4.5-vl-28b-a3b"),
    ("ernie-5.1", "0.5634", "2.5353", "0.5634", "aihubmix/ernie-5.1"),
    # Mistral
    ("mistral-large-latest", "0.5", "1.5", "0.05", "mistral/mistral-large-latest"),
    ("mistral-medium-latest", "1.5", "7.5", "0.15", "mistral/mistral-medium-latest"),
    ("mistral-small-latest", "0.15", "0.6", "0.015", "mistral/mistral-small-latest"),
    ("magistral-medium-latest", "1.5", "7.5", "0.15", "mistral/magistral-medium-latest"),
    ("magistral-small-latest", "0.15", "0.6", "0.015", "mistral/magistral-small-latest"),
    ("codestral-latest", "0.3", "0.9", "0.03", "mistral/codestral-latest"),
    ("devstral-latest", "0.4", "2", "0.04", "mistral/devstral-latest"),
    ("ministral-8b-latest", "0.15", "0.15", "0.015", "mistral/ministral-8b-latest"),
    ("ministral-3b-latest", "0.1", "0.1", "0.01", "mistral/ministral-3b-latest"),
    ("open-mistral-nemo", "0.3", "0.3", "0.03", "mistral/open-mistral-nemo"),
    ("pixtral-large-latest", "2", "6", "0.2", "mistral/pixtral-large-latest"),
    ("mistral-embed", "0.1", "0", None, "mistral/mistral-embed"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for model, inp, out, cached, key in PRICES:
        values = {
            "input": Decimal(inp),
            "output": Decimal(out),
            "cached_input": None if cached is None else Decimal(cached),
        }
        price, created = ModelPrice.objects.get_or_create(
            model=model,
            channel_type="",
            defaults={**values, "source": SOURCE.format(key), "as_of": AS_OF},
        )
        unedited = all(getattr(price, name) == value for name, value in values.items())
        if not created and not price.source and unedited:
            ModelPrice.objects.filter(pk=price.pk).update(source=SOURCE.format(key), as_of=AS_OF)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_budgets_redemption_reconcile")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
