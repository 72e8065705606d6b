"""Random-weight Llama-shaped GGUF models for bench/scale.sh, written with the `gguf` package
(PyPI, the writer llama.cpp's own converters use) and quantized by llama.cpp's own quantizer
(`llama_model_quantize` through llama-cpp-python's C API).

    PEER_PYTHON scale_model.py --shape 1b --out DIR [--types Q4_0,Q4_K_M] [--seed 19]

Writes DIR/<shape>-f16.gguf (F16 matrices, F32 norms; seeded normal weights, std 0.02, norms 1)
and DIR/<shape>-<type>.gguf for each type. Tensors are written one at a time (`add_tensor_info`
then `write_tensor_data`), so an 8B model never needs 16 GB of memory. Shapes are the published
configs of Llama-3.2-1B and Llama-3.1-8B (same dims, heads, vocabulary size, RoPE base and
Llama-3 RoPE scaling factors). The vocabulary is synthetic (256 byte tokens, then filler
tokens): these models are for speed and memory, never for text.
"""
import argparse, math, os, sys, time

import numpy as np
import gguf
import llama_cpp

SHAPES = {
    # Llama-3.2-1B: tied embeddings.
    "1b": dict(name="Llama-3.2-1B-shaped random", dim=2048, layers=16, heads=32, kv_heads=8, ff=8192,
               vocab=128256, ctx=131072, rope_base=500000.0, tied=True, rope_factor=32.0),
    # Llama-3.1-8B: separate output matrix.
    "8b": dict(name="Llama-3.1-8B-shaped random", dim=4096, layers=32, heads=32, kv_heads=8, ff=14336,
               vocab=128256, ctx=131072, rope_base=500000.0, tied=False, rope_factor=8.0),
}

FTYPES = {"Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
          "Q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}


def byte_tokens():
    """GPT-2's byte-to-unicode map: the 256 byte tokens of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def rope_freqs(s):
    """Llama 3 RoPE scaling (llama.cpp's convert_hf_to_gguf: low/high frequency factors 1 and 4,
    original context 8192): one divisor per rotated pair."""
    head_dim = s["dim"] // s["heads"]
    factor, low, high, old_ctx = s["rope_factor"], 1.0, 4.0, 8192
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (s["rope_base"] ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_llama_header(w, name, s, context, rope_base):
    """The hyperparameters (shape `s`: dim, layers, ff, heads, kv_heads, vocab) and the synthetic
    byte-level vocabulary of a random Llama-shaped model, F16 file type; bench/kquant_e2e.py's
    models use it too."""
    w.add_name(name)
    w.add_context_length(context)
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_dimension_count(s["dim"] // s["heads"])
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(s["vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens = byte_tokens()
    tokens += [f"<t{i}>" for i in range(s["vocab"] - len(tokens) - 2)] + ["<|begin_of_text|>", "<|end_of_text|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * (s["vocab"] - 2) + [gguf.TokenType.CONTROL] * 2)
    w.add_token_merges(["Ġ t", "h e"])
    w.add_bos_token_id(s["vocab"] - 2)
    w.add_eos_token_id(s["vocab"] - 1)
    w.add_add_bos_token(False)


def write_f16(shape, path, seed):
    s = SHAPES[shape]
    rng = np.random.default_rng(seed)
    head_dim = s["dim"] // s["heads"]
    kvw = s["kv_heads"] * head_dim
    w = gguf.GGUFWriter(path, "llama")
    write_llama_header(w, s["name"], s, context=s["ctx"], rope_base=s["rope_base"])

    # (name, numpy shape (rows, columns), dtype); ggml dims are the reverse.
    specs = [("token_embd.weight", (s["vocab"], s["dim"]), np.float16), ("rope_freqs.weight", (head_dim // 2,), np.float32)]
    for i in range(s["layers"]):
        p = f"blk.{i}."
        specs += [(p + "attn_norm.weight", (s["dim"],), np.float32),
                  (p + "attn_q.weight", (s["dim"], s["dim"]), np.float16),
                  (p + "attn_k.weight", (kvw, s["dim"]), np.float16),
                  (p + "attn_v.weight", (kvw, s["dim"]), np.float16),
                  (p + "attn_output.weight", (s["dim"], s["dim"]), np.float16),
                  (p + "ffn_norm.weight", (s["dim"],), np.float32),
                  (p + "ffn_gate.weight", (s["ff"], s["dim"]), np.float16),
                  (p + "ffn_up.weight", (s["ff"], s["dim"]), np.float16),
                  (p + "ffn_down.weight", (s["dim"], s["ff"]), np.float16)]
    specs.append(("output_norm.weight", (s["dim"],), np.float32))
    if not s["tied"]:
        specs.append(("output.weight", (s["vocab"], s["dim"]), np.float16))
    for name, shp, dtype in specs:
        w.add_tensor_info(name, shp, np.dtype(dtype), int(np.prod(shp)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shp, dtype in specs:
        if name == "rope_freqs.weight":
            t = rope_freqs(s)
        elif len(shp) == 1:
            t = np.ones(shp, dtype=np.float32)
        else:
            t = (rng.standard_normal(shp, dtype=np.float32) * 0.02).astype(dtype)
        w.write_tensor_data(t)
    w.close()


def quantize(src, dst, ftype, ftypes=FTYPES):
    """llama.cpp's quantizer on `src`, to `ftypes[ftype]` (a LLAMA_FTYPE_MOSTLY_* value)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[ftype]
    params.nthread = int(os.environ.get("THREADS", "2"))
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"error: llama_model_quantize({src} -> {ftype}) returned {rc}")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--shape", choices=sorted(SHAPES), required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--types", default="Q4_0,Q4_K_M")
    a.add_argument("--seed", type=int, default=19)
    a = a.parse_args()
    os.makedirs(a.out, exist_ok=True)
    f16 = os.path.join(a.out, f"{a.shape}-f16.gguf")
    if not os.path.exists(f16):
        t = time.time()
        write_f16(a.shape, f16 + ".part", a.seed)
        os.replace(f16 + ".part", f16)
        print(f"==> wrote {f16} ({os.path.getsize(f16) / 1e9:.2f} GB) in {time.time() - t:.0f} s", file=sys.stderr)
    for ftype in [x for x in a.types.split(",") if x]:
        dst = os.path.join(a.out, f"{a.shape}-{ftype.lower()}.gguf")
        if os.path.exists(dst):
            continue
        t = time.time()
        quantize(f16, dst + ".part", ftype)
        os.replace(dst + ".part", dst)
        print(f"==> quantized {dst} ({os.path.getsize(dst) / 1e9:.2f} GB) in {time.time() - t:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
