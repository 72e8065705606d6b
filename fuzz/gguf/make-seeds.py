#!/usr/bin/env python3
"""Writes a few small, valid GGUF files to use as a libFuzzer seed corpus.

usage: make-seeds.py OUTPUT_DIR
"""
import struct
import sys
from pathlib import Path

# ggml type id -> (elements per block, bytes per block); a few of them are enough here.
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 30: (1, 2)}


def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)
def gstr(s): b = s.encode(); return u64(len(b)) + b


def value(v):
    """(type id, payload) for a Python value."""
    if isinstance(v, bool): return 7, bytes([v])
    if isinstance(v, int): return (4, u32(v)) if 0 <= v < 2**32 else (11, struct.pack("<q", v))
    if isinstance(v, float): return 6, struct.pack("<f", v)
    if isinstance(v, str): return 8, gstr(v)
    if isinstance(v, tuple):  # (element type, [payloads])
        etype, items = v
        return 9, u32(etype) + u64(len(items)) + b"".join(items)
    raise TypeError(v)


def gguf(version, metadata, tensors, alignment=32):
    out = b"GGUF" + u32(version) + u64(len(tensors)) + u64(len(metadata))
    for key, v in metadata:
        t, payload = value(v)
        out += gstr(key) + u32(t) + payload
    offsets, cursor = [], 0
    for _, dims, t in tensors:
        cursor = (cursor + alignment - 1) // alignment * alignment
        offsets.append(cursor)
        blk, size = TYPES[t]
        n = dims[0] // blk * size
        for d in dims[1:]: n *= d
        cursor += n
    for (name, dims, t), off in zip(tensors, offsets):
        out += gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(t) + u64(off)
    pad = lambda b: b + bytes(-len(b) % alignment)
    data = b""
    for (name, dims, t), off in zip(tensors, offsets):
        data = data + bytes(off - len(data))
        blk, size = TYPES[t]
        n = dims[0] // blk * size
        for d in dims[1:]: n *= d
        data += bytes((i * 7 + 1) & 0xFF for i in range(n))
    return pad(out) + pad(data) if tensors else out


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tokens = ["<s>", "</s>", "a", "b", "ab", "Ġt", "é"]
    (out / "llama-tiny-v3.gguf").write_bytes(gguf(3, [
        ("general.architecture", "llama"),
        ("general.name", "tiny"),
        ("llama.block_count", 1),
        ("llama.rope.freq_base", 10000.0),
        ("tokenizer.ggml.add_bos_token", True),
        ("tokenizer.ggml.tokens", (8, [gstr(t) for t in tokens])),
        ("tokenizer.ggml.token_type", (5, [struct.pack("<i", 1)] * len(tokens))),
        ("tokenizer.ggml.scores", (6, [struct.pack("<f", -1.0)] * len(tokens))),
    ], [
        ("token_embd.weight", [64, 7], 8),
        ("blk.0.attn_norm.weight", [64], 0),
        ("output.weight", [256, 2], 12),
    ]))
    (out / "aligned64-v2.gguf").write_bytes(gguf(2, [
        ("general.alignment", 64),
        ("i64", -5),
        ("flags", (7, [b"\x01", b"\x00"])),
        ("u8s", (0, [b"\x01", b"\xff"])),
        ("f64s", (12, [struct.pack("<d", 0.5)])),
    ], [
        ("a", [32, 2], 2),
        ("b", [3, 1, 1, 2], 1),
        ("c", [4], 30),
    ], alignment=64))
    (out / "metadata-only-v3.gguf").write_bytes(gguf(3, [("general.architecture", "gpt2")], []))


if __name__ == "__main__":
    main()
