"""Writes kquants.json: llama.cpp's own results for the K-quant formats, for KQuantFixtureTests.

For each of Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: seeded random weight blocks (random quant and scale
bytes, F16 super-block scales from tiny subnormals to 65504, some zero or negative), ggml's
dequantized floats (`ggml_get_type_traits(t)->to_float`), and the dot products of two-block rows
with Q8_K activations (`ggml_get_type_traits_cpu(t)->vec_dot`, the kernel llama.cpp runs on this
CPU: the AVX2 one). The activations are floats of assorted magnitudes (with an all-zero block)
quantized by ggml's `from_float` for Q8_K, whose bytes are kept too.

Run with the llama-cpp-python 0.3.36 venv (llama.cpp compiled on this machine):
    bench/.venv-peer/bin/python Tests/KernelsTests/Fixtures/make_kquant_fixtures.py
Floats are stored as their IEEE bit patterns (hex), so the comparison is exact.
"""
import ctypes
import glob
import json
import os
import random
import struct

import llama_cpp

LIB_DIR = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = ctypes.CDLL(glob.glob(os.path.join(LIB_DIR, "libggml-base.so*"))[0], mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(glob.glob(os.path.join(LIB_DIR, "libggml-cpu.so*"))[0], mode=ctypes.RTLD_GLOBAL)

TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class TypeTraits(ctypes.Structure):
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class TypeTraitsCPU(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
base.ggml_get_type_traits.argtypes = [ctypes.c_int]
cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCPU)
cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
cpu.ggml_cpu_init()

Q8_K = 15
TYPES = {"Q2_K": (10, 84), "Q3_K": (11, 110), "Q4_K": (12, 144), "Q5_K": (13, 176), "Q6_K": (14, 210)}
# Byte offsets of the F16 super-block scales (d, then dmin where the type has one).
HALVES = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
SCALES = [1e-3, 2e-3, 0.5, -0.75, 0.0, 6e-8, 3e-5, 65504.0, -65504.0, 1.0, 7.5e-4, 1234.5]


def f16(x):
    return struct.pack("<e", x)


def weight_blocks(name, count, rng):
    size = TYPES[name][1]
    out = bytearray()
    for b in range(count):
        block = bytearray(rng.getrandbits(8) for _ in range(size))
        for k, off in enumerate(HALVES[name]):
            if b < 4:  # ordinary scales
                value = rng.uniform(1e-4, 2e-3) * (1 if k == 0 else rng.choice([1, -1]))
            else:
                value = SCALES[(b * 3 + k * 5) % len(SCALES)]
            block[off:off + 2] = f16(value)
        out += block
    return bytes(out)


def activations(rows, rng):
    """Floats of 2 blocks per row; row 2's second block is all zero; magnitudes vary per block."""
    values = []
    for r in range(rows):
        for b in range(2):
            mag = [1.0, 1e-3, 37.0, 1e30, 1e-30, 5.0][(2 * r + b) % 6]
            for i in range(256):
                values.append(0.0 if (r == 2 and b == 1) else rng.uniform(-1, 1) * mag)
    return values


def main():
    rng = random.Random(20261202)
    out = {"generator": "make_kquant_fixtures.py", "llama_cpp_python": llama_cpp.__version__, "types": {}}
    rows = 4
    x = activations(rows, rng)
    xf = (ctypes.c_float * len(x))(*x)
    q8 = ctypes.create_string_buffer(292 * 2 * rows)
    q8_traits = cpu.ggml_get_type_traits_cpu(Q8_K).contents
    FROM_FLOAT(q8_traits.from_float)(xf, q8, len(x))
    out["activationFloats"] = [struct.pack("<f", v).hex() for v in xf]
    out["q8K"] = q8.raw.hex()
    for name, (tid, size) in TYPES.items():
        traits = base.ggml_get_type_traits(tid).contents
        cpu_traits = cpu.ggml_get_type_traits_cpu(tid).contents
        assert cpu_traits.vec_dot_type == Q8_K
        nblocks = 24
        w = weight_blocks(name, nblocks, rng)
        wbuf = ctypes.create_string_buffer(w, len(w))
        floats = (ctypes.c_float * (256 * nblocks))()
        TO_FLOAT(traits.to_float)(wbuf, floats, 256 * nblocks)
        dots = []
        s = ctypes.c_float()
        for r in range(nblocks // 2):
            for t in range(rows):
                VEC_DOT(cpu_traits.vec_dot)(512, ctypes.byref(s), 0, ctypes.addressof(wbuf) + r * 2 * size, 0,
                                           ctypes.addressof(q8) + t * 2 * 292, 0, 1)
                dots.append(struct.pack("<f", s.value).hex())
        out["types"][name] = {"blocks": w.hex(), "dequantized": "".join(struct.pack("<f", v).hex() for v in floats),
                     "dots": dots}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kquants.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
