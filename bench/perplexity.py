"""llama.cpp's side of bench/perplexity.sh (run with the peer's Python, llama-cpp-python).

  perplexity.py quantize SRC DST TYPE   llama.cpp's quantizer, requantizing SRC (allow_requantize) to TYPE
  perplexity.py measure MODEL TOKENS    perplexity of TOKENS' token_ids (n_ctx chunks), as
                                        Tests/InferenceTests/Fixtures/make_fixtures.py computes it
  perplexity.py types MODEL             the file's tensor types and their counts (needs `gguf`)
"""
import json, os, sys
import llama_cpp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "InferenceTests", "Fixtures"))
from make_fixtures import perplexity  # noqa: E402  (the fixture's own computation)

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
    value, chunks, count = perplexity(llm, tokens, n_ctx)
    print(json.dumps({"engine": "llama-cpp-python " + llama_cpp.__version__, "nCtx": n_ctx, "chunks": chunks,
                      "scored": count, "value": value}))


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
