"""K-quant models end to end against llama.cpp (issue 18): a small random-weight Llama-shaped model
whose widths divide by 256 (so llama.cpp's quantizer keeps its K-quant choices, no Q5_0/Q8_0
fallbacks), quantized by llama.cpp itself (`llama_model_quantize`) to Q2_K, Q3_K_M, Q4_K_M, Q5_K_M
and Q6_K, then greedy decoding of the same prompt by `securenode generate --exact --json` and by
llama.cpp (llama-cpp-python 0.3.36 compiled here), with the prompt evaluated as one batch and (a
second llama.cpp run) one token at a time, plus llama.cpp's top logits.

    PEER_PYTHON bench/kquant_e2e.py --securenode BIN --dir DIR [--tokens 48] [--types Q4_K_M,...]

The model is "peaky" (embedding and output weights with a large spread) so that greedy choices
are not decided by last-bit rounding. Models stay in DIR (never committed). Prints one JSON line
per type and writes DIR/kquant-e2e.json.
"""
import argparse, json, os, subprocess, sys

import numpy as np
import gguf
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_model  # noqa: E402
from scale_model import write_llama_header  # noqa: E402

SHAPE = dict(dim=512, layers=4, heads=8, kv_heads=4, ff=1536, vocab=4096)
FTYPES = {"Q2_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K, "Q3_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_S,
          "Q3_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M, "Q3_K_L": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_L,
          "Q4_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
          "Q5_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_S, "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
          "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K}
PROMPT = "A quick brown fox jumps over a lazy dog and a cat"  # no " t" or "he": the synthetic vocabulary has merges for them but not their tokens, which llama.cpp then drops


def write_f16(path, seed=18):
    s = SHAPE
    rng = np.random.default_rng(seed)
    hd = s["dim"] // s["heads"]
    kvw = s["kv_heads"] * hd
    w = gguf.GGUFWriter(path, "llama")
    write_llama_header(w, "K-quant end-to-end random", s, context=2048, rope_base=10000.0)
    f16 = np.float16
    w.add_tensor("token_embd.weight", (rng.standard_normal((s["vocab"], s["dim"]), dtype=np.float32) * 1.0).astype(f16))
    for i in range(s["layers"]):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(s["dim"], dtype=np.float32))
        for name, shape in [("attn_q", (s["dim"], s["dim"])), ("attn_k", (kvw, s["dim"])), ("attn_v", (kvw, s["dim"])),
                            ("attn_output", (s["dim"], s["dim"])), ("ffn_gate", (s["ff"], s["dim"])),
                            ("ffn_up", (s["ff"], s["dim"])), ("ffn_down", (s["dim"], s["ff"]))]:
            w.add_tensor(p + name + ".weight", (rng.standard_normal(shape, dtype=np.float32) * 0.08).astype(f16))
        w.add_tensor(p + "ffn_norm.weight", np.ones(s["dim"], dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(s["dim"], dtype=np.float32))
    w.add_tensor("output.weight", (rng.standard_normal((s["vocab"], s["dim"]), dtype=np.float32) * 0.5).astype(f16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst, ftype):
    scale_model.quantize(src, dst, ftype, FTYPES)


def tensor_types(path):
    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        out[t.tensor_type.name] = out.get(t.tensor_type.name, 0) + 1
    return out


def llama_greedy(path, n, batched=True):
    """llama.cpp's greedy tokens; the prompt as one batch, or (`batched` False) one token at a time."""
    b = 512 if batched else 1
    llm = llama_cpp.Llama(path, n_ctx=512, n_batch=b, n_ubatch=b, n_threads=2, flash_attn=False, logits_all=True,
                          verbose=False)
    ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
    if batched:
        llm.eval(ids)
    else:
        for i in ids:
            llm.eval([i])
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    top = np.argsort(-logits)[:5]
    out = []
    for _ in range(n):
        t = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)))
        out.append(t)
        llm.eval([t])
    return ids, out, [(int(i), float(logits[i])) for i in top]


def ours(args, path, sig, n):
    cmd = [args.securenode, "generate", "--model", path, "--signature", sig, "--public-key", args.public_key,
           "--prompt", PROMPT, "--max-tokens", str(n), "--temperature", "0", "--json", "--exact"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1:] or ["failed"]
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return j, None


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--securenode", required=True)
    a.add_argument("--dir", required=True)
    a.add_argument("--private-key", required=True)
    a.add_argument("--public-key", required=True)
    a.add_argument("--tokens", type=int, default=48)
    a.add_argument("--types", default="Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,Q6_K")
    args = a.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "kq-f16.gguf")
    if not os.path.exists(src):
        write_f16(src + ".part")
        os.replace(src + ".part", src)
    results = []
    for ftype in args.types.split(","):
        dst = os.path.join(args.dir, f"kq-{ftype.lower()}.gguf")
        if not os.path.exists(dst):
            quantize(src, dst + ".part", ftype)
            os.replace(dst + ".part", dst)
        sig = dst + ".sig"
        subprocess.run([args.securenode, "model", "sign", dst, "--private-key", args.private_key, "--signature", sig],
                       check=True, capture_output=True)
        ids, theirs, top = llama_greedy(dst, args.tokens)
        _, stepwise, _ = llama_greedy(dst, args.tokens, batched=False)
        mine, err = ours(args, dst, sig, args.tokens)
        r = {"type": ftype, "tensor_types": tensor_types(dst), "llama_top5": top, "llama_output": theirs,
             "llama_stepwise_output": stepwise}
        if mine is None:
            r["error"] = err
        else:
            o = mine["output_ids"]
            lead = next((i for i, (x, y) in enumerate(zip(o, theirs)) if x != y), min(len(o), len(theirs)))
            lead_step = next((i for i, (x, y) in enumerate(zip(o, stepwise)) if x != y), min(len(o), len(stepwise)))
            r.update(prompt_ids_equal=mine["prompt_ids"] == ids, prompt_ids=(mine["prompt_ids"], ids), securenode_output=o, leading_equal=lead,
                     leading_equal_stepwise_prompt=lead_step,
                     equal=sum(x == y for x, y in zip(o, theirs)), tokens=len(theirs))
        print(json.dumps({k: v for k, v in r.items() if k not in ("llama_output", "securenode_output", "llama_stepwise_output", "prompt_ids")}), flush=True)
        results.append(r)
    with open(os.path.join(args.dir, "kquant-e2e.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
