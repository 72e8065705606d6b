"""llama.cpp's outputs on SmolLM2-135M requantized to Q4_0, Q5_0 and Q5_1, for Q32ReferenceTests.

    PEER_PYTHON bench/q32_reference.py --source SmolLM2-135M-Instruct.Q4_1.gguf --models DIR [--fixtures DIR]

Requantizes the source model with llama.cpp's own quantizer (`llama_model_quantize`,
allow_requantize: the Q4_1 tensors are dequantized and quantized again) into DIR/<type>.gguf
(never committed), then, as ../shared/reference/ was made for the Q4_1 model: each reference
prompt tokenized by llama.cpp (add_special, no parse_special), evaluated in one batch, the top-10
raw logits at the last position, then 64 greedy steps (argmax of the raw logits, ties to the lowest
id). Writes <type>-greedy.json and <type>-logits-top10.json into the fixtures directory
(default Tests/InferenceTests/Fixtures/q32).
"""
import argparse, json, math, os, sys

import numpy as np
import llama_cpp

FTYPES = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
          "q5_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
N_GEN = 64


def quantize(src, dst, ftype, threads):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"error: llama_model_quantize({src} -> {dst}) returned {rc}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--fixtures", default=os.path.join(here, "..", "Tests", "InferenceTests", "Fixtures", "q32"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--types", default="q4_0,q5_0,q5_1")
    p.add_argument("--quantize-only", action="store_true", help="write the models, not llama.cpp's outputs")
    a = p.parse_args()
    os.makedirs(a.models, exist_ok=True)
    os.makedirs(a.fixtures, exist_ok=True)
    for t in a.types.split(","):
        path = os.path.join(a.models, f"{t}.gguf")
        if not os.path.exists(path):
            quantize(a.source, path + ".part", FTYPES[t], a.threads)
            os.replace(path + ".part", path)
        if a.quantize_only:
            continue
        llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=a.threads,
                              n_threads_batch=a.threads, verbose=False)
        vocab = llm.n_vocab()
        ctx = llm._ctx

        def logits():
            return np.ctypeslib.as_array(ctx.get_logits_ith(-1), shape=(vocab,)).astype(np.float64)

        engine = f"llama.cpp via llama-cpp-python {llama_cpp.__version__} (CPU, GGML_NATIVE, {a.threads} threads)"
        greedy, top = [], []
        for prompt in PROMPTS:
            ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)
            llm.reset()
            llm.eval(ids)
            z = logits()
            lse = float(np.log(np.sum(np.exp(z - z.max()))) + z.max())
            order = sorted(range(vocab), key=lambda i: (-z[i], i))[:10]
            top.append({"prompt": prompt, "prompt_ids": ids, "top10": [
                {"id": i, "logit": float(np.float32(z[i])), "logprob": float(z[i] - lse),
                 "piece": llm.detokenize([i]).decode("utf-8", "replace")} for i in order]})
            out = []
            for _ in range(N_GEN):
                nxt = int(np.argmax(logits()))
                out.append(nxt)
                llm.eval([nxt])
            greedy.append({"prompt": prompt, "prompt_ids": ids, "output_ids": out,
                           "output_text": llm.detokenize(out).decode("utf-8", "replace")})
        with open(os.path.join(a.fixtures, f"{t}-greedy.json"), "w") as f:
            json.dump({"engine": engine, "model": f"SmolLM2-135M-Instruct requantized to {t.upper()} by llama_model_quantize",
                       "n_gen": N_GEN, "eos_id": 2, "eot_id": 0, "results": greedy}, f, indent=1)
        with open(os.path.join(a.fixtures, f"{t}-logits-top10.json"), "w") as f:
            json.dump({"engine": engine, "note": "raw logits at the final prompt position, top-10", "results": top}, f, indent=1)
        print(f"==> {t}: {path}", file=sys.stderr)
        del llm


if __name__ == "__main__":
    main()
