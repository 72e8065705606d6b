#!/usr/bin/env python3
"""Makes the llama.cpp reference fixtures of the InferenceTests target.

Exact command (from the package root, with llama-cpp-python 0.3.36 in a throwaway venv):

    python3 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
    /tmp/llvenv/bin/python Tests/InferenceTests/Fixtures/make_fixtures.py \
        models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf

Writes, beside this script:
- tokenizer.json: token ids of a corpus (code, whitespace runs, numbers, non-Latin scripts, emoji,
  control tokens written as text) from llama.cpp's own tokenizer (vocab_only=True,
  add_bos=False), with special=False and special=True;
- perplexity.json: llama.cpp's perplexity of perplexity-text.txt (Pride and Prejudice, chapter 1,
  public domain), tokenized without BOS, in non-overlapping chunks of `n_ctx` tokens (the last
  partial chunk dropped), each chunk evaluated from an empty context with logits for every
  position (logits_all=True), every token after the first of a chunk scored:
  ppl = exp(mean over scored tokens of -log softmax(logits[i - 1])[token i]), in float64.
"""
import json, math, os, sys
import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
N_CTX = 256

CORPUS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "    four spaces, then\ttab\t\tand two tabs   and trailing   ",
    "line one\n\nline three\r\nwindows line\n\n\n   indented after blank lines",
    "Numbers: 0 7 42 123 4567 89012 3.14159 -273.15 1,000,000 2024-06-01 0x1F 1e-9",
    "I'm sure you've heard they'll say it's what we'd do. DON'T SHOUT'S",
    "Ünïcödé façade naïve café — “quotes” ‘single’ … ellipsis",
    "Русский текст: Привет, мир! Как дела?",
    "中文文本：你好，世界！今天天气很好。",
    "日本語のテキスト：こんにちは世界。カタカナとひらがな。",
    "한국어 텍스트: 안녕하세요 세계",
    "العربية: مرحبا بالعالم",
    "हिन्दी पाठ: नमस्ते दुनिया",
    "Emoji: 😀 🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨",
    "Math: ∀x∈ℝ, x² ≥ 0; ½ + ¼ = ¾; √2 ≈ 1.414; ①②③ Ⅻ",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text with <|endoftext|> inside and <jupyter_code>x = 1",
    "<html><body class=\"main\">&nbsp;&amp;</body></html>",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE __dunder__",
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "   ",
    "\n",
    "a",
    "",
    "Mixed:abc123def456 x1y2z3 v2.0.1-beta+build.7",
    "Tabs\tand\u00a0non-breaking\u2003em space\u3000ideographic space",
]

def main():
    vocab = llama_cpp.Llama(MODEL, vocab_only=True, verbose=False)
    cases = []
    for text in CORPUS:
        b = text.encode("utf-8")
        cases.append({
            "text": text,
            "ids": vocab.tokenize(b, add_bos=False, special=False),
            "ids_special": vocab.tokenize(b, add_bos=False, special=True),
        })
    with open(os.path.join(HERE, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({"engine": "llama-cpp-python " + llama_cpp.__version__, "add_bos": False, "cases": cases},
                  f, ensure_ascii=False, indent=1)

    text = open(os.path.join(HERE, "perplexity-text.txt"), encoding="utf-8").read()
    llm = llama_cpp.Llama(MODEL, n_ctx=N_CTX, n_batch=N_CTX, n_threads=2, logits_all=True,
                          flash_attn=False, verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    ppl, chunks, count = perplexity(llm, tokens, N_CTX)
    with open(os.path.join(HERE, "perplexity.json"), "w") as f:
        json.dump({"engine": "llama-cpp-python " + llama_cpp.__version__, "n_ctx": N_CTX, "tokens": len(tokens),
                   "chunks": chunks, "scored": count, "perplexity": ppl, "token_ids": tokens}, f)
    print(f"tokens {len(tokens)}, chunks {chunks}, scored {count}, perplexity {ppl:.6f}")


def perplexity(llm, tokens, n_ctx):
    """(perplexity, chunks, scored) of `tokens` on `llm` (a Llama with logits_all, n_ctx >= `n_ctx`).
    Also bench/perplexity.py's."""
    chunks = len(tokens) // n_ctx
    nll, count = 0.0, 0
    for c in range(chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for i in range(1, n_ctx):
            row = logits[i - 1]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[chunk[i]]
            count += 1
    return math.exp(nll / count), chunks, count


if __name__ == "__main__":
    MODEL = sys.argv[1]
    main()
