"""Drives `sparetire serve` with the official `openai` Python package.

Run by tests/openai_client.rs: python3 openai_client.py BASE_URL API_KEY
Exits non-zero (with the failing assertion) if any shape is not what the client expects.
"""
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

models = client.models.list()
model = models.data[0].id
assert model == "tiny-llama", model

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    max_tokens=8,
    temperature=0,
)
msg = chat.choices[0].message
assert msg.role == "assistant" and isinstance(msg.content, str)
assert chat.choices[0].finish_reason in ("stop", "length")
assert chat.usage.completion_tokens <= 8 and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

pieces, finish, usage = [], None, None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    max_tokens=8,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        finish = c.finish_reason or finish
    usage = chunk.usage or usage
assert "".join(pieces) == msg.content, ("".join(pieces), msg.content)
assert finish == chat.choices[0].finish_reason and usage.completion_tokens == chat.usage.completion_tokens

comp = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=5, temperature=0, logprobs=2)
assert len(comp.choices[0].logprobs.token_logprobs) == comp.usage.completion_tokens

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert "no-such-model" in str(e)

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], temperature=7)
    raise AssertionError("temperature 7 was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "temperature", e.body

bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print("openai client: all checks passed")
