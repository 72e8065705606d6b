#!/usr/bin/env python3
"""Makes the architecture and weight-type fixtures of the InferenceTests target (issue 18).

Exact command (from the package root; llama-cpp-python 0.3.36 compiled from its sdist and the
`gguf` package from PyPI in one venv; the sdist's vendor/llama.cpp/models/ggml-vocab-*.gguf in
VOCAB_DIR):

    PY=bench/.venv-peer/bin/python   # pip install llama-cpp-python==0.3.36 gguf
    $PY Tests/InferenceTests/Fixtures/architectures/make_arch_fixtures.py VOCAB_DIR

Everything is seeded (numpy's default_rng(SEED + n)): the same inputs give the same files.

Writes, beside this script:
- <name>.<TYPE>.gguf: small random-weight models of each architecture the engine runs, with real
  tensor names, real hyperparameter keys and a real tokenizer of the family (a llama.cpp test
  vocabulary truncated to about 512 tokens: the first ids, then every control/user-defined token,
  ids renumbered, BPE merges kept when both parts and the result survive). Float files come from
  gguf's writer; quantized files from llama.cpp's own quantizer (llama_model_quantize).
- preset-llama.<PRESET>.gguf: one Llama-shaped model (widths divisible by 256) quantized with
  every preset of llama.cpp's quantizer from Q2_K to Q8_0, F16 and BF16.
- expected.json: for every file, llama.cpp's tensor types, and for every prompt its token ids
  (llama_tokenize with add_special, no parse_special), the 16 largest final-position logits, and
  32 greedy tokens (argmax of the raw logits, lowest id on ties, evaluated one by one; no sampler).

llama.cpp runs with n_ctx 128, n_batch = n_ubatch 128 (each prompt is one batch), 2 threads, and
flash attention off (llama.cpp's default CPU path, the one the engine reproduces).
"""
import ctypes, json, os, sys
import numpy as np
import gguf
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_DIR = sys.argv[1]
SEED = 18
N_CTX = 128
N_GEN = 32
KEEP_TOKENS = 512
PROMPTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b",
    "Once upon a time, there was",
]

# ---------------------------------------------------------------------------------------------
# Vocabularies


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def truncated_vocab(name):
    """The tokenizer keys of ggml-vocab-<name>.gguf, truncated to about KEEP_TOKENS tokens."""
    r = gguf.GGUFReader(os.path.join(VOCAB_DIR, f"ggml-vocab-{name}.gguf"))
    tokens = field_value(r, "tokenizer.ggml.tokens")
    types = field_value(r, "tokenizer.ggml.token_type")
    scores = field_value(r, "tokenizer.ggml.scores")
    merges = field_value(r, "tokenizer.ggml.merges")
    model = field_value(r, "tokenizer.ggml.model")
    ids = {k: field_value(r, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding", "eot", "eom")}
    keep = list(range(min(KEEP_TOKENS, len(tokens))))
    special = [i for i, t in enumerate(types) if t in (3, 4) and i >= KEEP_TOKENS][:24]
    special += [v for v in ids.values() if v is not None and v >= KEEP_TOKENS and v not in special]
    keep += sorted(set(special))
    remap = {old: new for new, old in enumerate(keep)}
    out = {
        "tokenizer.ggml.model": model,
        "tokenizer.ggml.tokens": [tokens[i] for i in keep],
        "tokenizer.ggml.token_type": [types[i] for i in keep],
    }
    if scores is not None:
        out["tokenizer.ggml.scores"] = [float(scores[i]) for i in keep]
    if merges is not None:
        kept = set(out["tokenizer.ggml.tokens"])
        out["tokenizer.ggml.merges"] = [m for m in merges
                                        if (lambda a, b: a in kept and b in kept and a + b in kept)(*m.split(" ", 1))]
    for k, v in ids.items():
        if v is not None and v in remap:
            out[f"tokenizer.ggml.{k}_token_id"] = remap[v]
    for k in ("pre", "add_bos_token", "add_eos_token", "add_space_prefix"):
        v = field_value(r, f"tokenizer.ggml.{k}")
        if v is not None:
            out[f"tokenizer.ggml.{k}"] = v
    return out


def add_vocab(w, vocab):
    for k, v in vocab.items():
        if k == "tokenizer.ggml.tokens":
            w.add_token_list(v)
        elif k == "tokenizer.ggml.token_type":
            w.add_token_types(v)
        elif k == "tokenizer.ggml.scores":
            w.add_token_scores(v)
        elif k == "tokenizer.ggml.merges":
            w.add_token_merges(v)
        elif isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        else:
            w.add_string(k, v)

# ---------------------------------------------------------------------------------------------
# Models


class Spec:
    def __init__(self, name, arch, vocab, dim, layers, ff, heads, kv_heads, head_dim=None, **kw):
        self.name, self.arch, self.vocab, self.dim, self.layers, self.ff = name, arch, vocab, dim, layers, ff
        self.heads, self.kv_heads = heads, kv_heads
        self.head_dim = head_dim or dim // heads
        self.kw = kw


SPECS = [
    # Llama 2 / Mistral / TinyLlama shape: SentencePiece vocabulary, grouped-query attention, separate output.
    Spec("llama-spm", "llama", "llama-spm", 64, 2, 128, 2, 1, output=True, floats=["F32", "F16"]),
    # Llama 3.x: byte-level BPE (llama-bpe), rope base 500000 and llama3 frequency factors (rope_freqs.weight).
    Spec("llama3-bpe", "llama", "llama-bpe", 64, 2, 128, 2, 1, rope_base=500000.0, rope_freqs=True),
    Spec("qwen2", "qwen2", "qwen2", 64, 2, 128, 2, 1, rope_base=1000000.0, bias=True),
    Spec("qwen3", "qwen3", "qwen2", 64, 2, 128, 4, 2, head_dim=32, rope_base=1000000.0, qk_norm=True, output=True),
    Spec("phi3", "phi3", "phi-3", 64, 2, 128, 2, 2, fused=True, output=True),
    # Gemma uses a SentencePiece vocabulary (tokenizer.ggml.model "llama"); llama.cpp ships none of
    # Gemma 2/3's, so llama-spm's stands in.
    Spec("gemma2", "gemma2", "llama-spm", 64, 2, 128, 4, 2, head_dim=32, gemma=2, floats=["F32", "F16"]),
    Spec("gemma3", "gemma3", "llama-spm", 64, 2, 128, 4, 2, head_dim=32, gemma=3, rope_base=1000000.0),
]
PRESET = Spec("preset-llama", "llama", "llama-bpe", 256, 1, 256, 4, 2, rope_base=500000.0)


def write_model(spec, path, index):
    rng = np.random.default_rng(SEED + index)
    vocab = truncated_vocab(spec.vocab)
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    a, kw = spec.arch, spec.kw
    w = gguf.GGUFWriter(path, a)
    w.add_uint32(f"{a}.context_length", 256)
    w.add_uint32(f"{a}.embedding_length", spec.dim)
    w.add_uint32(f"{a}.block_count", spec.layers)
    w.add_uint32(f"{a}.feed_forward_length", spec.ff)
    w.add_uint32(f"{a}.attention.head_count", spec.heads)
    w.add_uint32(f"{a}.attention.head_count_kv", spec.kv_heads)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.rope.freq_base", kw.get("rope_base", 10000.0))
    w.add_uint32(f"{a}.rope.dimension_count", spec.head_dim)
    if spec.head_dim != spec.dim // spec.heads:
        w.add_uint32(f"{a}.attention.key_length", spec.head_dim)
        w.add_uint32(f"{a}.attention.value_length", spec.head_dim)
    if kw.get("gemma") == 2:
        w.add_float32("gemma2.attn_logit_softcapping", 3.0)
        w.add_float32("gemma2.final_logit_softcapping", 30.0)
        w.add_uint32("gemma2.attention.sliding_window", 4)
    if kw.get("gemma") == 3:
        w.add_uint32("gemma3.attention.sliding_window", 4)
        w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
        w.add_float32("gemma3.rope.freq_base_swa", 10000.0)
        w.add_string("gemma3.rope.scaling.type", "linear")
        w.add_float32("gemma3.rope.scaling.factor", 8.0)
    w.add_uint32("general.file_type", 0)
    add_vocab(w, vocab)

    def mat(rows, cols, scale=1.0):  # ggml [cols, rows]: numpy (rows, cols)
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    d, hd, qw, kvw, ff = spec.dim, spec.head_dim, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, spec.ff
    # Peaky: a large output scale (output.weight, or the output norm of a model whose output is its
    # embedding), so that the logits' top gaps dwarf rounding; a small embedding and large block
    # outputs, so that the residual is not the input token's own embedding (with a tied output the
    # model would otherwise predict its last token forever).
    tied = not kw.get("output")
    emb_std = 0.05 if kw.get("gemma") else 0.1
    w.add_tensor("token_embd.weight", (rng.standard_normal((n_vocab, d)) * emb_std).astype(np.float32))
    gain = (10.0 if kw.get("gemma") == 2 else 12.0) / (emb_std * np.sqrt(d)) if tied else 1.0
    w.add_tensor("output_norm.weight", (norm(d) * gain).astype(np.float32))
    if not tied:
        w.add_tensor("output.weight", mat(n_vocab, d, 24.0))
    if kw.get("rope_freqs"):
        w.add_tensor("rope_freqs.weight", np.array([1.0] * (hd // 4) + list(np.geomspace(1.0, 8.0, hd // 4)), np.float32))
    for i in range(spec.layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm(d))
        if kw.get("fused"):
            w.add_tensor(p + "attn_qkv.weight", mat(qw + 2 * kvw, d))
        else:
            w.add_tensor(p + "attn_q.weight", mat(qw, d))
            w.add_tensor(p + "attn_k.weight", mat(kvw, d))
            w.add_tensor(p + "attn_v.weight", mat(kvw, d))
        if kw.get("bias"):
            w.add_tensor(p + "attn_q.bias", (0.5 * rng.standard_normal(qw)).astype(np.float32))
            w.add_tensor(p + "attn_k.bias", (0.5 * rng.standard_normal(kvw)).astype(np.float32))
            w.add_tensor(p + "attn_v.bias", (0.5 * rng.standard_normal(kvw)).astype(np.float32))
        if kw.get("qk_norm") or kw.get("gemma") == 3:
            w.add_tensor(p + "attn_q_norm.weight", norm(hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        w.add_tensor(p + "attn_output.weight", mat(d, qw, 2.0))
        if kw.get("gemma"):
            w.add_tensor(p + "post_attention_norm.weight", norm(d))
            w.add_tensor(p + "post_ffw_norm.weight", norm(d))
        w.add_tensor(p + "ffn_norm.weight", norm(d))
        if kw.get("fused"):
            w.add_tensor(p + "ffn_up.weight", mat(2 * ff, d))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(ff, d))
            w.add_tensor(p + "ffn_up.weight", mat(ff, d))
        w.add_tensor(p + "ffn_down.weight", mat(d, ff, 2.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


FTYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17,
    "Q6_K": 18, "BF16": 32,
}
PRESETS = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
           "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16"]


def quantize(src, dst, preset):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[preset]
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize {dst}: {rc}"


def tensor_types(path):
    r = gguf.GGUFReader(path)
    counts = {}
    for t in r.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def run_llama_cpp(path):
    llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=2,
                          n_threads_batch=2, flash_attn=False, verbose=False)
    n_vocab = llm.n_vocab()
    ctx = llm._ctx

    def logits():
        return np.ctypeslib.as_array(ctx.get_logits_ith(-1), shape=(n_vocab,)).copy()

    results = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(ids)
        first = logits()
        top = np.argsort(-first, kind="stable")[:16]
        out = []
        current = first
        for _ in range(N_GEN):
            nxt = int(np.argmax(current))  # first maximum: lowest id on ties
            out.append(nxt)
            llm.eval([nxt])
            current = logits()
        results.append({"prompt": prompt, "prompt_ids": ids, "output_ids": out,
                        "top": [{"id": int(i), "logit": float(first[i])} for i in top]})
    del llm
    return results


def main():
    files = []
    tmp = os.path.join(HERE, "tmp-sources")
    os.makedirs(tmp, exist_ok=True)
    for index, spec in enumerate(SPECS):
        src = os.path.join(tmp, f"{spec.name}.F32.gguf")
        write_model(spec, src, index)
        for t in spec.kw.get("floats", ["F16"]) + ["Q8_0", "Q4_0"]:
            dst = os.path.join(HERE, f"{spec.name}.{t}.gguf")
            if t == "F32":
                with open(src, "rb") as f, open(dst, "wb") as g:
                    g.write(f.read())
            else:
                quantize(src, dst, t)
            files.append((spec, t, dst))
    src = os.path.join(tmp, f"{PRESET.name}.F32.gguf")
    write_model(PRESET, src, len(SPECS))
    for t in PRESETS:
        dst = os.path.join(HERE, f"{PRESET.name}.{t}.gguf")
        quantize(src, dst, t)
        files.append((PRESET, t, dst))
    fixtures = []
    for spec, t, path in files:
        print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes", flush=True)
        fixtures.append({"file": os.path.basename(path), "architecture": spec.arch, "model": spec.name,
                         "type": t, "vocabulary": spec.vocab, "bytes": os.path.getsize(path),
                         "tensor_types": tensor_types(path), "results": run_llama_cpp(path)})
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    meta = {"llama_cpp_python": llama_cpp.__version__, "n_ctx": N_CTX, "n_gen": N_GEN, "seed": SEED,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            "fixtures": fixtures}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
