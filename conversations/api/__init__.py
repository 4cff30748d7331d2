"""The OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`), for any OpenAI client.

Keys (`ApiKey`) authenticate with `Authorization: Bearer`; every call is recorded (`ApiCall`)
and answered through `providers.services.stream_chat` under the chat's own limits.
"""
