#!/usr/bin/env python3
"""Regenerate tests/golden/tokenizer/<model>.json with llama.cpp's tokenizer (the reference).

Each file is a JSON list of {"text", "add_special", "parse_special", "ids", "pieces"}: the ids
llama.cpp's `llama_tokenize(vocab, text, add_special, parse_special)` returns, and for each id
the bytes of `llama_token_to_piece(special=True)` as a list of ints (to check decoding).

Needs the reference's Python bindings and a build of its libllama:

    PYTHONPATH=/work/ref/llama_cpp_python-0.3.36 \
    LLAMA_CPP_LIB_PATH=/work/ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin \
    python3 scripts/gen_tokenizer_goldens.py [smollm2 gemma3-270m]

Models are read from ${SPARETIRE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire}/models/NAME.gguf.

With `--reference-vocabs LLAMA_CPP_DIR` it instead runs the same corpus through llama.cpp's
vocab-only test files (models/ggml-vocab-NAME.gguf) and writes ggml-vocab-NAME.json (ids only),
which crates/tokenizer/tests/reference_vocabs.rs checks (an ignored test: the vocab files stay in
the reference checkout).
"""
import json
import os
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden" / "tokenizer"

# Special tokens of each model, spliced into text to test parse_special.
SPECIALS = {
    "smollm2": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>"],
    "gemma3-270m": ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>"],
}

CORPUS = [
    "",
    " ",
    "  ",
    "\n",
    "a",
    "Hello world",
    " Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness.",
    "I'M you've they'RE we'll she'd It's DON'T can't o'clock 'tis",
    "I've been there. You'd LOVE it. We'Ll see!",
    "1234567890",
    "3.14159 and 2.71828, 1,000,000 and 1e-10, -42, +7, 0x1F",
    "Phone: 555-0123 / 2024-11-29T16:48:00Z",
    "你好，世界！今天天气很好。",
    "机器学习是人工智能的一个分支。",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "한국어 텍스트입니다. 안녕하세요!",
    "Ελληνικά και русский язык и العربية و עברית",
    "Ünïcödé àccents: café naïve résumé façade Zürich",
    "def foo(x):\n\treturn x * 2\n\n\nclass Bar:\n    def __init__(self):\n        self.y = [1, 2, 3]\n",
    "for (int i = 0; i < n; ++i) {\n\t\tsum += a[i] * b[i];\n}",
    "    indented four\n        indented eight\n\t\ttabbed",
    "fn main() { println!(\"{}\", 1 + 2); } // comment",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "emoji: 😀😃😄 👍🏽 🇫🇷 ❤️ ✨",
    "family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏾‍💻",
    "a      b",
    "trailing spaces    ",
    "    leading spaces",
    "\n\n\n\nmany newlines\n\n",
    "mixed \t \n \r\n whitespace \u00a0 nbsp \u3000 ideographic",
    "line1\r\nline2\rline3\n",
    "                                                              long run of spaces",
    "\t\t\t\t\t\t\t\ttabs",
    "!!!???...,,,;;;:::",
    "@#$%^&*()_+-=[]{}|\\`~<>/",
    "«quotes» “curly” ‘single’ — dash – en … ellipsis",
    "math: ∑ ∫ √ ∞ ≠ ≤ ≥ π α β γ ℝ ℕ",
    "https://example.com/path?query=1&x=y#frag",
    "user@example.com",
    "CamelCaseWordsAndsnake_case_words and kebab-case",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND MORE 4567",
    "<0xFF> <0x41> <unk> <s> </s> [UNK] <|notatoken|>",
    "<|im_start",
    "\ufffd replacement \ufeff bom \u200b zero width",
    "\x01\x02\x7f control chars\x00null",
    "combining: e\u0301 a\u0308 n\u0303 and lone \u0301 mark",
    "Hindi: नमस्ते दुनिया, Thai: สวัสดีชาวโลก",
    "𝕳𝖊𝖑𝖑𝖔 𝓦𝓸𝓻𝓵𝓭 in math letters",
    "a'b'c 'quoted' \"double\" ''",
    "x" * 300,
    "The year 2024 had 366 days; 12345678901234567890 is big.",
    "tab\tseparated\tvalues\n1\t2\t3",
    "  \n  \n  ",
    " . ",
    "Ħ ŀ ĉ Ġ Ċ ▁ ▁▁ ▁hello",
]


def special_cases(model):
    s = SPECIALS[model]
    return [
        f"{s[0]}user\nHello!{s[1]}\n{s[0]}assistant\n",
        f"text before {s[0]} text after",
        f"{s[1]}{s[1]}{s[0]}",
        f"Hi{s[2]}there",
        f" {s[0]} ",
        f"{s[3]} {s[4]}x",
        s[0],
    ]


def model_path(name):
    home = os.environ.get("SPARETIRE_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(cache, "sparetire")
    return Path(home) / "models" / f"{name}.gguf"


def piece(llm, tok):
    buf = (llama_cpp.ctypes.c_char * 256)()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, True)
    return list(bytes(buf[:n]))


REFERENCE_VOCABS = ["gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "starcoder", "command-r", "llama-spm", "phi-3"]


def reference_vocabs(llama_cpp_dir):
    for name in REFERENCE_VOCABS:
        path = Path(llama_cpp_dir) / "models" / f"ggml-vocab-{name}.gguf"
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        cases = []
        for text in CORPUS:
            for add_special, parse_special in [(True, True), (False, False)]:
                ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
                cases.append({"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids})
        out = OUT_DIR / f"ggml-vocab-{name}.json"
        out.write_text(json.dumps(cases, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{name}: {len(cases)} cases -> {out.relative_to(ROOT)}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--reference-vocabs":
        reference_vocabs(sys.argv[2])
        return
    models = sys.argv[1:] or ["smollm2", "gemma3-270m"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for model in models:
        path = model_path(model)
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        cases = []
        texts = CORPUS + special_cases(model)
        for text in texts:
            has_special = any(s in text for s in SPECIALS[model])
            combos = [(True, True), (False, False)]
            if has_special:
                combos += [(False, True), (True, False)]
            for add_special, parse_special in combos:
                ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
                cases.append({
                    "text": text,
                    "add_special": add_special,
                    "parse_special": parse_special,
                    "ids": ids,
                    "pieces": [piece(llm, t) for t in ids],
                })
        out = OUT_DIR / f"{model}.json"
        out.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{model}: {len(cases)} cases -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
