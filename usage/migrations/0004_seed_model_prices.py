"""Seed ModelPrice with public list prices (USD per 1M tokens, standard tier, no batch/cache discounts).

Taken on 2025-08-15 from the vendors' public pricing pages (openai.com/api/pricing,
docs.anthropic.com/en/docs/about-claude/pricing, cohere.com/pricing, mistral.ai/pricing,
ai.google.dev/gemini-api/docs/pricing, aws.amazon.com/bedrock/pricing for us-east-1 on-demand) as
the gateway's authors knew them then. Prices change: add a row with a later effective_from in the
admin (Usage → Model prices) rather than editing these, so past calls keep the price they were made at.
Tiered prices (e.g. Gemini 2.5 Pro above 200k prompt tokens) are seeded at their base tier.

The rows take effect from 2020-01-01 so that every call, old ones included, has a price.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SOURCE = "vendor list price, taken 2025-08-15"
EFFECTIVE_FROM = datetime(2020, 1, 1, tzinfo=UTC)

# (provider, model, input USD per 1M tokens, output USD per 1M tokens)
PRICES = [
    # OpenAI (also Azure OpenAI routes whose model/deployment name is the model's)
    ("openai", "gpt-5", "1.25", "10.00"),
    ("openai", "gpt-5-mini", "0.25", "2.00"),
    ("openai", "gpt-5-nano", "0.05", "0.40"),
    ("openai", "gpt-4.1", "2.00", "8.00"),
    ("openai", "gpt-4.1-mini", "0.40", "1.60"),
    ("openai", "gpt-4.1-nano", "0.10", "0.40"),
    ("openai", "gpt-4o", "2.50", "10.00"),
    ("openai", "gpt-4o-mini", "0.15", "0.60"),
    ("openai", "gpt-4-turbo", "10.00", "30.00"),
    ("openai", "gpt-4", "30.00", "60.00"),
    ("openai", "gpt-4-32k", "60.00", "120.00"),
    ("openai", "gpt-3.5-turbo", "0.50", "1.50"),
    ("openai", "gpt-3.5-turbo-instruct", "1.50", "2.00"),
    ("openai", "o1", "15.00", "60.00"),
    ("openai", "o1-mini", "1.10", "4.40"),
    ("openai", "o3", "2.00", "8.00"),
    ("openai", "o3-mini", "1.10", "4.40"),
    ("openai", "o4-mini", "1.10", "4.40"),
    ("openai", "text-embedding-3-small", "0.02", "0"),
    ("openai", "text-embedding-3-large", "0.13", "0"),
    ("openai", "text-embedding-ada-002", "0.10", "0"),
    # Anthropic
    ("anthropic", "claude-opus-4-1", "15.00", "75.00"),
    ("anthropic", "claude-opus-4", "15.00", "75.00"),
    ("anthropic", "claude-sonnet-4", "3.00", "15.00"),
    ("anthropic", "claude-3-7-sonnet", "3.00", "15.00"),
    ("anthropic", "claude-3-5-sonnet", "3.00", "15.00"),
    ("anthropic", "claude-3-5-haiku", "0.80", "4.00"),
    ("anthropic", "claude-3-opus", "15.00", "75.00"),
    ("anthropic", "claude-3-sonnet", "3.00", "15.00"),
    ("anthropic", "claude-3-haiku", "0.25", "1.25"),
    ("anthropic", "claude-2.1", "8.00", "24.00"),
    ("anthropic", "claude-2.0", "8.00", "24.00"),
    ("anthropic", "claude-instant-1.2", "0.80", "2.40"),
    # Cohere
    ("cohere", "command-a", "2.50", "10.00"),
    ("cohere", "command-r-plus", "2.50", "10.00"),
    ("cohere", "command-r", "0.15", "0.60"),
    ("cohere", "command-r7b", "0.0375", "0.15"),
    ("cohere", "command", "1.00", "2.00"),
    ("cohere", "command-light", "0.30", "0.60"),
    ("cohere", "embed-v4.0", "0.12", "0"),
    ("cohere", "embed-english-v3.0", "0.10", "0"),
    ("cohere", "embed-multilingual-v3.0", "0.10", "0"),
    ("cohere", "embed-english-light-v3.0", "0.10", "0"),
    ("cohere", "embed-multilingual-light-v3.0", "0.10", "0"),
    # Mistral (La Plateforme)
    ("mistral", "mistral-large", "2.00", "6.00"),
    ("mistral", "mistral-medium", "0.40", "2.00"),
    ("mistral", "mistral-small", "0.10", "0.30"),
    ("mistral", "codestral", "0.30", "0.90"),
    ("mistral", "pixtral-large", "2.00", "6.00"),
    ("mistral", "open-mistral-nemo", "0.15", "0.15"),
    ("mistral", "ministral-8b", "0.10", "0.10"),
    ("mistral", "ministral-3b", "0.04", "0.04"),
    ("mistral", "mistral-embed", "0.10", "0"),
    # Google Gemini API (prompts up to 200k tokens)
    ("gemini", "gemini-2.5-pro", "1.25", "10.00"),
    ("gemini", "gemini-2.5-flash", "0.30", "2.50"),
    ("gemini", "gemini-2.5-flash-lite", "0.10", "0.40"),
    ("gemini", "gemini-2.0-flash", "0.10", "0.40"),
    ("gemini", "gemini-2.0-flash-lite", "0.075", "0.30"),
    ("gemini", "gemini-1.5-pro", "1.25", "5.00"),
    ("gemini", "gemini-1.5-flash", "0.075", "0.30"),
    ("gemini", "gemini-embedding-001", "0.15", "0"),
    # Amazon Bedrock, on-demand, us-east-1 (model ids; "us."/"eu." inference profiles match too)
    ("bedrock", "anthropic.claude-opus-4-1", "15.00", "75.00"),
    ("bedrock", "anthropic.claude-opus-4", "15.00", "75.00"),
    ("bedrock", "anthropic.claude-sonnet-4", "3.00", "15.00"),
    ("bedrock", "anthropic.claude-3-7-sonnet", "3.00", "15.00"),
    ("bedrock", "anthropic.claude-3-5-sonnet", "3.00", "15.00"),
    ("bedrock", "anthropic.claude-3-5-haiku", "0.80", "4.00"),
    ("bedrock", "anthropic.claude-3-haiku", "0.25", "1.25"),
    ("bedrock", "anthropic.claude-3-opus", "15.00", "75.00"),
    ("bedrock", "amazon.nova-pro", "0.80", "3.20"),
    ("bedrock", "amazon.nova-lite", "0.06", "0.24"),
    ("bedrock", "amazon.nova-micro", "0.035", "0.14"),
    ("bedrock", "amazon.titan-text-express", "0.20", "0.60"),
    ("bedrock", "amazon.titan-text-lite", "0.15", "0.20"),
    ("bedrock", "amazon.titan-embed-text-v2", "0.02", "0"),
    ("bedrock", "meta.llama3-1-405b-instruct", "2.40", "2.40"),
    ("bedrock", "meta.llama3-1-70b-instruct", "0.72", "0.72"),
    ("bedrock", "meta.llama3-1-8b-instruct", "0.22", "0.22"),
    ("bedrock", "mistral.mistral-large-2402", "4.00", "12.00"),
    ("bedrock", "cohere.command-r-plus", "3.00", "15.00"),
    ("bedrock", "cohere.command-r", "0.50", "1.50"),
]


def seed(apps, schema_editor):
    model_price = apps.get_model("usage", "ModelPrice")
    for provider, model, input_price, output_price in PRICES:
        model_price.objects.get_or_create(
            provider=provider, model=model, effective_from=EFFECTIVE_FROM,
            defaults={"input_per_mtok": Decimal(input_price), "output_per_mtok": Decimal(output_price),
                      "source": SOURCE},
        )


def unseed(apps, schema_editor):
    model_price = apps.get_model("usage", "ModelPrice")
    for provider, model, _, _ in PRICES:
        model_price.objects.filter(provider=provider, model=model, effective_from=EFFECTIVE_FROM,
                                   source=SOURCE).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("usage", "0003_usage_pipeline"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
    ]
