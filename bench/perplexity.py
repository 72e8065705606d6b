"""llama.cpp's side of bench/perplexity.sh (run with the peer's Python, llama-cpp-python).

  perplexity.py quantize SRC DST TYPE   llama.cpp's quantizer, requantizing SRC (allow_requantize) to TYPE
  perplexity.py measure MODEL TOKENS    perplexity of TOKENS' token_ids (n_ctx chunks), as
                                        Tests/InferenceTests/Fixtures/make_fixtures.py computes it
  perplexity.py types MODEL             the file's tensor types and their counts (needs `gguf`)
"""
import json, math, sys
import numpy as np
import llama_cpp

FTYPES = {"Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q4_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S,
          "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M}


def quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"error: llama_model_quantize({src} -> {ftype}) returned {rc}")


def measure(model, tokens_file):
    fixture = json.load(open(tokens_file))
    n_ctx, tokens = fixture["n_ctx"], fixture["token_ids"]
    llm = llama_cpp.Llama(model, n_ctx=n_ctx, n_batch=n_ctx, n_threads=2, logits_all=True, flash_attn=False, verbose=False)
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
            nll += m + math.log(np.exp(row - m).sum()) - row[chunk[i]]
            count += 1
    print(json.dumps({"engine": "llama-cpp-python " + llama_cpp.__version__, "nCtx": n_ctx, "chunks": chunks,
                      "scored": count, "value": math.exp(nll / count)}))


def types(model):
    import collections, gguf
    counts = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(model).tensors)
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


if sys.argv[1] == "quantize":
    quantize(*sys.argv[2:5])
elif sys.argv[1] == "types":
    types(sys.argv[2])
else:
    measure(*sys.argv[2:4])
