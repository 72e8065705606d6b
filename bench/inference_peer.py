"""The llama.cpp side of bench/inference.sh: one run, in its own process, through llama-cpp-python's
low-level eval path (llama_decode per batch, greedy argmax over the raw logits; no sampler, no
`__call__`). Prints one JSON object in the same shape as `securenode bench-engine`.

    PEER_PYTHON inference_peer.py --model FILE.gguf --threads N --prompt-lengths 16,32,... --decode-tokens 128

Conventions shared with `securenode bench-engine` (see inference_bench.py):
- prompt token ids: ids[i] = (1 + i * 7919) % vocab (deterministic pseudo-random tokens, as llama-bench);
- every prompt-processing measurement starts from an empty context (reset + KV cache cleared);
- TTFT: a 128-token prompt evaluated and the first greedy token chosen;
- decode: empty context, evaluate token 1, then N steps of (argmax of the last logits -> evaluate it);
  the N steps are timed;
- no warm-up evaluation: the first prompt length is the first evaluation after load.
"""
import argparse, json, os, resource, sys, time

T0 = time.perf_counter()
import numpy as np  # noqa: E402  (llama-cpp-python depends on numpy)
import llama_cpp  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T0
# Python, NumPy and the llama.cpp shared libraries, before any model: the part of this process's
# peak RSS that a C++ llama.cpp binary would not have.
BASELINE_RSS_BYTES = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def prompt_ids(n, vocab):
    return [(1 + i * 7919) % vocab for i in range(n)]


def kv_cache_bytes(llm):
    """F16 K and V for every layer and context position (llama.cpp's default cache types)."""
    md = llm.metadata
    arch = md.get("general.architecture", "llama")
    n_layer = int(md[f"{arch}.block_count"])
    n_head = int(md[f"{arch}.attention.head_count"])
    n_head_kv = int(md.get(f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(md[f"{arch}.embedding_length"]) // n_head
    k_len = int(md.get(f"{arch}.attention.key_length", head_dim))
    v_len = int(md.get(f"{arch}.attention.value_length", head_dim))
    return n_layer * llm.n_ctx() * n_head_kv * (k_len + v_len) * 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="the GGUF file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-lengths", default="16,32,64,128,256,512")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--batch", type=int, default=512)
    a = p.parse_args()
    lengths = [int(x) for x in a.prompt_lengths.split(",")]

    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=a.model, n_ctx=a.ctx, n_batch=a.batch, n_ubatch=a.batch,
        n_threads=a.threads, n_threads_batch=a.threads, verbose=False,
    )
    cold = time.perf_counter() - start
    vocab = llm.n_vocab()
    ctx = llm._ctx  # low-level context: logits of the last evaluated position

    def greedy():
        logits = np.ctypeslib.as_array(ctx.get_logits_ith(-1), shape=(vocab,))
        return int(np.argmax(logits))  # first maximum: lowest id on ties

    prefill = []
    for n in lengths:
        ids = prompt_ids(n, vocab)
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill.append({"tokens": n, "seconds": time.perf_counter() - t})

    ids = prompt_ids(128, vocab)
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    greedy()
    ttft = time.perf_counter() - t

    llm.reset()
    llm.eval([1])
    t = time.perf_counter()
    for _ in range(a.decode_tokens):
        llm.eval([greedy()])
    decode = time.perf_counter() - t
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # The Python-side share of a decode step that a C++ caller would not pay: the NumPy view of the
    # logits and its argmax (timed here, after the measurement, on the same logits).
    t = time.perf_counter()
    for _ in range(a.decode_tokens):
        greedy()
    argmax = time.perf_counter() - t

    out = {
        "engine": "llama.cpp",
        "threads": a.threads,
        "modelBytes": os.path.getsize(a.model),
        "kvCacheBytes": kv_cache_bytes(llm),
        "coldStartSeconds": cold,
        "verifySeconds": None,
        "prefill": prefill,
        "ttft128Seconds": ttft,
        "decode": {"tokens": a.decode_tokens, "seconds": decode},
        "peakRSSBytes": peak_rss,
        # Extras (not in securenode's contract):
        "importSeconds": IMPORT_SECONDS,
        "baselineRSSBytes": BASELINE_RSS_BYTES,
        "pythonArgmaxSeconds": argmax,
        "nCtx": llm.n_ctx(),
        "nBatch": a.batch,
        "vocab": vocab,
        "llamaCppPythonVersion": llama_cpp.__version__,
        "systemInfo": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
