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

# Stop strings: the text ends before the stop string, finish_reason "stop".
full = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=12, temperature=0).choices[0].text
stop = full[len(full) // 2 :][:3]
if stop.strip():
    cut = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text, (full, stop, cut)
    assert full.startswith(cut.choices[0].text), (full, cut.choices[0].text)

# Seeds: the same seed gives the same sample, whatever else runs.
sample = lambda seed: client.completions.create(model=model, prompt="Once", max_tokens=8, temperature=1.0, seed=seed).choices[0].text
assert sample(7) == sample(7)

# n choices, streamed: each index gets its own text and finish reason; usage in a last chunk.
texts, finishes, usage = {}, {}, None
for chunk in client.completions.create(model=model, prompt="Once", max_tokens=4, temperature=1.0, seed=3, n=2, stream=True, stream_options={"include_usage": True}):
    for c in chunk.choices:
        texts[c.index] = texts.get(c.index, "") + (c.text or "")
        if c.finish_reason:
            finishes[c.index] = c.finish_reason
    usage = chunk.usage or usage
whole = client.completions.create(model=model, prompt="Once", max_tokens=4, temperature=1.0, seed=3, n=2)
assert [texts[i] for i in range(2)] == [c.text for c in whole.choices], (texts, whole)
assert sorted(finishes) == [0, 1] and usage.completion_tokens == whole.usage.completion_tokens

# Prompt + max_tokens beyond the context: 400 with the counts, never a silent cut.
try:
    client.completions.create(model=model, prompt="Hello", max_tokens=100000)
    raise AssertionError("a request beyond the context was accepted")
except openai.BadRequestError as e:
    assert "256" in str(e) and "100000" in str(e), str(e)

# Wrong types name the field.
try:
    client.completions.create(model=model, prompt="Hello", max_tokens=4, extra_body={"top_p": "high"})
    raise AssertionError("a string top_p was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "top_p", e.body

# Oversized bodies are refused.
try:
    client.completions.create(model=model, prompt="x" * (5 << 20), max_tokens=1)
    raise AssertionError("a 5 MiB body was accepted")
except openai.APIStatusError as e:
    assert e.status_code == 413, e.status_code

bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print("openai client: all checks passed")
