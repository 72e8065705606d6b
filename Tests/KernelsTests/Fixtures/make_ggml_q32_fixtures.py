#!/usr/bin/env python3
"""Writes ggml-q32.json: llama.cpp's own ggml results for random Q4_0, Q5_0 and Q5_1 blocks, which
GGMLFixtureTests holds the Swift references to, bit for bit.

Run with the llama-cpp-python 0.3.36 venv (bench/.venv-peer, compiled on this machine):
    bench/.venv-peer/bin/python Tests/KernelsTests/Fixtures/make_ggml_q32_fixtures.py

ggml is called through ctypes: ggml_get_type_traits(type)->to_float (dequantize_row_*),
ggml_get_type_traits_cpu(type)->vec_dot (the AVX2 ggml_vec_dot_*), and the dot type's
ggml_get_type_traits_cpu(Q8_x)->from_float (quantize_row_q8_0 / q8_1). Seeded: the output is
the same on every run on the same build of ggml.
"""
import ctypes
import json
import os
import random
import struct
import sys

import llama_cpp

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = ctypes.CDLL(os.path.join(LIB, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)

TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class TypeTraits(ctypes.Structure):  # ggml.h struct ggml_type_traits
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", TO_FLOAT), ("from_float_ref", FROM_FLOAT)]


class TypeTraitsCPU(ctypes.Structure):  # ggml-cpu.h struct ggml_type_traits_cpu
    _fields_ = [("from_float", FROM_FLOAT), ("vec_dot", VEC_DOT), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCPU)
cpu.ggml_cpu_init()

TYPES = {"Q4_0": (2, 18, 8), "Q5_0": (6, 22, 8), "Q5_1": (7, 24, 9)}  # id, block bytes, dot type id
Q8_BYTES = {8: 34, 9: 36}
BLOCKS = 48
# Edge F16 scales: largest finite, smallest subnormal, zero, one, negative.
EDGE_HALVES = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0000, 0x3C00, 0xBC00, 0x0400]


def half_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def weight_blocks(rng, name, size):
    out = bytearray()
    for b in range(BLOCKS):
        block = bytearray(rng.getrandbits(8) for _ in range(size))
        if b % 12 == 11:
            block = bytearray(size)  # all zero
        elif b < len(EDGE_HALVES):
            struct.pack_into("<H", block, 0, EDGE_HALVES[b])
            if name == "Q5_1":
                struct.pack_into("<H", block, 2, EDGE_HALVES[(b + 3) % len(EDGE_HALVES)])
        else:
            struct.pack_into("<H", block, 0, half_bits(rng.uniform(-0.05, 0.05)))
            if name == "Q5_1":
                struct.pack_into("<H", block, 2, half_bits(rng.uniform(-0.2, 0.2)))
        if b == 9:  # every high bit set / qs all ones
            start = 4 if name == "Q5_1" else 2
            block[start:] = b"\xff" * (size - start)
            struct.pack_into("<H", block, 0, 0x3C00)
            if name == "Q5_1":
                struct.pack_into("<H", block, 2, 0xBC00)
        out += block
    return bytes(out)


def activations(rng):
    xs = []
    for b in range(BLOCKS):
        scale = [1e-3, 0.1, 1.0, 10.0][b % 4]
        for i in range(32):
            xs.append(0.0 if b % 10 == 7 else rng.gauss(0, 1) * scale)
    return xs


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def main():
    rng = random.Random(20261202)
    result = {"generator": "Tests/KernelsTests/Fixtures/make_ggml_q32_fixtures.py",
              "llama_cpp_python": llama_cpp.__version__, "blocks": BLOCKS, "types": []}
    for name, (tid, size, dot_id) in TYPES.items():
        traits = base.ggml_get_type_traits(tid).contents
        cpu_traits = cpu.ggml_get_type_traits_cpu(tid).contents
        assert traits.type_size == size and cpu_traits.vec_dot_type == dot_id, name
        w = weight_blocks(rng, name, size)
        n = 32 * BLOCKS
        wbuf = ctypes.create_string_buffer(w, len(w))
        deq = (ctypes.c_float * n)()
        traits.to_float(wbuf, deq, n)
        x = activations(rng)
        xbuf = (ctypes.c_float * n)(*x)
        qbuf = ctypes.create_string_buffer(Q8_BYTES[dot_id] * BLOCKS)
        cpu.ggml_get_type_traits_cpu(dot_id).contents.from_float(xbuf, qbuf, n)
        dots = []
        for first, count in [(0, 1), (1, 1), (0, 8), (8, 16), (5, 7), (0, BLOCKS), (20, 3), (40, 8)]:
            s = ctypes.c_float()
            cpu_traits.vec_dot(32 * count, ctypes.byref(s), 0,
                               ctypes.addressof(wbuf) + first * size, 0,
                               ctypes.addressof(qbuf) + first * Q8_BYTES[dot_id], 0, 1)
            dots.append({"first": first, "count": count, "bits": f32_bits(s.value)})
        result["types"].append({
            "type": name, "weights": w.hex(), "dequantized": [f32_bits(v) for v in deq],
            "activations": [f32_bits(v) for v in x], "quantized": qbuf.raw.hex(), "dots": dots})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ggml-q32.json")
    with open(path, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
