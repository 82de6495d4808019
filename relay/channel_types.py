"""Channel types: the contract's type strings, their default base URLs, and
which wire protocol each speaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelType:
    name: str
    label: str
    default_base_url: str  # blank: required (azure)
    protocol: str  # "openai" for OpenAI-compatible; others get their own adapter
    local: bool = False  # local servers are free unless priced


CHANNEL_TYPES: dict[str, ChannelType] = {
    t.name: t
    for t in (
        ChannelType("openai", "OpenAI (or any OpenAI-compatible server)", "https://api.openai.com/v1", "openai"),
        ChannelType("azure", "Azure OpenAI", "", "azure"),
        ChannelType("anthropic", "Anthropic", "https://api.anthropic.com", "anthropic"),
        ChannelType("gemini", "Google Gemini", "https://generativelanguage.googleapis.com/v1beta", "gemini"),
        ChannelType("ollama", "Ollama (native API)", "http://127.0.0.1:11434", "ollama", local=True),
        ChannelType("deepseek", "DeepSeek", "https://api.deepseek.com/v1", "openai"),
        ChannelType("moonshot", "Moonshot (Kimi)", "https://api.moonshot.cn/v1", "openai"),
        ChannelType(
            "dashscope", "Alibaba DashScope (Qwen)", "https://dashscope.aliyuncs.com/compatible-mode/v1", "openai"
        ),
        ChannelType("zhipu", "Zhipu (GLM)", "https://open.bigmodel.cn/api/paas/v4", "openai"),
        ChannelType("qianfan", "Baidu Qianfan (ERNIE)", "https://qianfan.baidubce.com/v2", "openai"),
        ChannelType("siliconflow", "SiliconFlow", "https://api.siliconflow.cn/v1", "openai"),
        ChannelType("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", "openai"),
        ChannelType("groq", "Groq", "https://api.groq.com/openai/v1", "openai"),
        ChannelType("mistral", "Mistral", "https://api.mistral.ai/v1", "openai"),
        ChannelType("xai", "xAI (Grok)", "https://api.x.ai/v1", "openai"),
        ChannelType("vllm", "vLLM", "http://127.0.0.1:8000/v1", "openai", local=True),
        ChannelType("llamacpp", "llama.cpp server", "http://127.0.0.1:8080/v1", "openai", local=True),
        ChannelType("lmstudio", "LM Studio", "http://127.0.0.1:1234/v1", "openai", local=True),
    )
}

CHOICES = [(t.name, t.label) for t in CHANNEL_TYPES.values()]
